// A grpc-go load generator for the KMS v2 plugin benchmarks (bench/plugin.ts, bench/plugin-vs-go.ts):
// N goroutines share one gRPC connection to a UNIX socket (as kube-apiserver does) and each calls
// v2 Encrypt (or Decrypt of a ciphertext from a first Encrypt) in a closed loop for S seconds. A
// grpc-go client costs a fraction of a grpc-js one per call and uses every core, so the plugin, not
// the load generator, is what bounds the rate. Prints one JSON line: calls, perSecond, p50Ms, p99Ms.
// Same raw-bytes codec and protowire encoding as bench/go-plugin (Debian 12 has no protoc-gen-go-grpc).
//
// -bare dials the bare socket path instead of "unix:"+path, as kube-apiserver 1.27/1.28 do: grpc-go
// then sends the path as :authority, which the plugin's HTTP/2 edge must repair (its slow path).
//
//	usage: go-loadgen -socket /path/kms.sock [-method Encrypt|Decrypt] [-callers 32] [-seconds 2] [-conns 1] [-bare]
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
)

type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// fields returns every bytes-typed field num of a message (a map's entries are repeated fields).
func fields(b []byte, want protowire.Number) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return out
		}
		if num == want && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			out = append(out, v)
		}
		b = b[m:]
	}
	return out
}

// field returns bytes-typed field num of a message (last wins).
func field(b []byte, want protowire.Number) []byte {
	all := fields(b, want)
	if len(all) == 0 {
		return nil
	}
	return all[len(all)-1]
}

func main() {
	socket := flag.String("socket", "", "plugin UNIX socket path")
	method := flag.String("method", "Encrypt", "Encrypt or Decrypt")
	callers := flag.Int("callers", 32, "concurrent callers")
	seconds := flag.Float64("seconds", 2, "measurement time")
	conns := flag.Int("conns", 1, "gRPC connections (callers are spread over them)")
	bare := flag.Bool("bare", false, "dial the bare path (the path becomes the :authority), as kube-apiserver 1.27/1.28 do")
	flag.Parse()
	if *socket == "" || (*method != "Encrypt" && *method != "Decrypt") {
		flag.Usage()
		os.Exit(2)
	}
	dial := func() *grpc.ClientConn {
		target := "unix:" + *socket
		if *bare {
			target = *socket
		}
		cc, err := grpc.Dial(target, grpc.WithInsecure(), grpc.WithBlock(),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", *socket)
			}))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return cc
	}
	ccs := make([]*grpc.ClientConn, *conns)
	for i := range ccs {
		ccs[i] = dial()
	}
	dek := make([]byte, 32)
	_, _ = rand.Read(dek)
	encReq := appendBytes(appendBytes(nil, 1, dek), 2, []byte("bench-uid"))
	req := encReq
	call := func(cc *grpc.ClientConn, in []byte) ([]byte, error) {
		var out []byte
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := cc.Invoke(ctx, "/v2.KeyManagementService/"+*method, &in, &out)
		return out, err
	}
	if *method == "Decrypt" {
		var out []byte
		if err := ccs[0].Invoke(context.Background(), "/v2.KeyManagementService/Encrypt", &encReq, &out); err != nil {
			fmt.Fprintln(os.Stderr, "encrypt:", err)
			os.Exit(1)
		}
		req = appendBytes(appendBytes(appendBytes(nil, 1, field(out, 1)), 2, []byte("bench-uid")), 3, field(out, 2))
		// The annotations Encrypt returned (EncryptResponse field 3) go back with Decrypt (DecryptRequest
		// field 4), as kube-apiserver stores and returns them: a key-hierarchy plugin needs them.
		for _, entry := range fields(out, 3) {
			req = appendBytes(req, 4, entry)
		}
	}
	// warm-up
	for i := 0; i < 200; i++ {
		if _, err := call(ccs[i%len(ccs)], req); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	var failed error
	start := time.Now()
	until := start.Add(time.Duration(*seconds * float64(time.Second)))
	var wg sync.WaitGroup
	for w := 0; w < *callers; w++ {
		wg.Add(1)
		go func(cc *grpc.ClientConn) {
			defer wg.Done()
			mine := make([]time.Duration, 0, 4096)
			for time.Now().Before(until) {
				t0 := time.Now()
				if _, err := call(cc, req); err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}(ccs[w%len(ccs)])
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if failed != nil {
		fmt.Fprintln(os.Stderr, failed)
		os.Exit(1)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p/100*float64(len(lat))+0.999999) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(lat) {
			i = len(lat) - 1
		}
		return float64(lat[i].Microseconds()) / 1000
	}
	_ = json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"calls": len(lat), "perSecond": float64(len(lat)) / elapsed, "p50Ms": pct(50), "p99Ms": pct(99),
	})
	for _, cc := range ccs {
		cc.Close()
	}
}
