// A connection whose client→server bytes pass through a ClientStream in repair mode before
// nghttp2 reads them; server→client bytes go to the socket untouched. Node's HTTP/2 runs over it
// through its JS stream adapter (no native read path), which costs throughput: only connections
// that need the repair, or that gave no verdict in time, come here (see edge.ts).
import { Duplex } from 'node:stream';
import type net from 'node:net';
import type { ClientStream } from './client-stream.js';

type Callback = (err?: Error | null) => void;

export class RepairingConnection extends Duplex {
  constructor(private readonly socket: net.Socket, stream: ClientStream, first: Buffer[], onMalformed: (err: unknown) => void) {
    super({ allowHalfOpen: false });
    if (first.length > 0) this.push(first.length === 1 ? first[0] : Buffer.concat(first));
    socket.on('data', (chunk: Buffer) => {
      let out: Buffer[];
      try {
        out = stream.feed(chunk);
      } catch (err) {
        onMalformed(err);
        this.destroy();
        return;
      }
      if (out.length === 0) return;
      if (!this.push(out.length === 1 ? out[0] : Buffer.concat(out))) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    socket.resume();
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    this.socket.write(chunk, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: Callback): void {
    this.socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.socket.write(chunks[i]!.chunk);
    this.socket.write(chunks[chunks.length - 1]!.chunk, callback);
    this.socket.uncork();
  }

  override _final(callback: Callback): void {
    this.socket.end(callback);
  }

  override _destroy(err: Error | null, callback: Callback): void {
    this.socket.destroy();
    callback(err);
  }
}
