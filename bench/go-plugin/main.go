// Minimal KMS v2 plugin (v2.KeyManagementService Status/Encrypt/Decrypt) in Go with grpc-go,
// for bench/plugin-vs-go.ts. Encrypt = AES-256-GCM with an in-memory random key, 12-byte random
// nonce, key_id as AAD; ciphertext = nonce || sealed. Messages are hand-encoded with protowire
// (no protoc-gen-go-grpc in Debian 12), through a raw-bytes codec.
//   usage: go-plugin /path/to/socket
package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

const keyID = "go:v1"

type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string   { return "proto" }
func (rawCodec) String() string { return "proto" }

type plugin struct{ aead cipher.AEAD }

// fields returns the bytes-typed (wire type 2) fields of a message by number (last wins).
func fields(b []byte) (map[protowire.Number][]byte, error) {
	out := map[protowire.Number][]byte{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			out[num] = v
			b = b[m:]
		} else {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			b = b[m:]
		}
	}
	return out, nil
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func (p *plugin) status() []byte {
	var b []byte
	b = appendBytes(b, 1, []byte("v2"))
	b = appendBytes(b, 2, []byte("ok"))
	return appendBytes(b, 3, []byte(keyID))
}

func (p *plugin) encrypt(req []byte) ([]byte, error) {
	f, err := fields(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	nonce := make([]byte, 12, 12+len(f[1])+16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	ct := p.aead.Seal(nonce, nonce, f[1], []byte(keyID))
	var b []byte
	b = appendBytes(b, 1, ct)
	return appendBytes(b, 2, []byte(keyID)), nil
}

func (p *plugin) decrypt(req []byte) ([]byte, error) {
	f, err := fields(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ct := f[1]
	if string(f[3]) != keyID || len(ct) < 12+16 {
		return nil, status.Error(codes.InvalidArgument, "unknown key_id or short ciphertext")
	}
	pt, err := p.aead.Open(nil, ct[:12], ct[12:], f[3])
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "decrypt failed")
	}
	return appendBytes(nil, 1, pt), nil
}

func handler(fn func(*plugin, []byte) ([]byte, error)) func(interface{}, context.Context, func(interface{}) error, grpc.UnaryServerInterceptor) (interface{}, error) {
	return func(srv interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
		var in []byte
		if err := dec(&in); err != nil {
			return nil, err
		}
		return fn(srv.(*plugin), in)
	}
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "v2.KeyManagementService",
	HandlerType: (*interface{})(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Status", Handler: handler(func(p *plugin, _ []byte) ([]byte, error) { return p.status(), nil })},
		{MethodName: "Encrypt", Handler: handler((*plugin).encrypt)},
		{MethodName: "Decrypt", Handler: handler((*plugin).decrypt)},
	},
	Metadata: "proto/v2/api.proto",
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-plugin /path/to/socket")
		os.Exit(2)
	}
	path := os.Args[1]
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	_ = os.Remove(path)
	lis, err := net.Listen("unix", path)
	if err != nil {
		panic(err)
	}
	s := grpc.NewServer(grpc.CustomCodec(rawCodec{}))
	s.RegisterService(&serviceDesc, &plugin{aead: aead})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; s.Stop(); _ = os.Remove(path) }()
	fmt.Fprintf(os.Stderr, "{\"event\":\"start\",\"socket\":%q}\n", path)
	if err := s.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
