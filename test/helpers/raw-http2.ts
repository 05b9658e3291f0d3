// A raw HTTP/2 client for tests of the plugin's HTTP/2 edge: it writes exactly the bytes a test
// builds (any :authority or none, padding, priority, CONTINUATION, HPACK dynamic-table entries,
// garbage) and reads the server's frames back, decoding its header blocks with an HPACK decoder of
// its own connection. gRPC messages are framed by hand (1-byte flag, 4-byte length).
import net from 'node:net';
import { CLIENT_PREFACE, EMPTY_SETTINGS_FRAME, Flag, frameHeader, FrameType, MAX_FRAME_PAYLOAD } from '../../src/plugin/http2-edge/frames.js';
import { HpackDecoder, type HeaderField } from '../../src/plugin/http2-edge/hpack.js';
import { huffmanEncode } from '../../src/plugin/http2-edge/huffman.js';

export interface StreamResult {
  headerBlocks: HeaderField[][];
  data: Buffer;
  rstCode?: number;
  ended: boolean;
}

/** HPACK representations built by hand, so tests control each byte. */
export const hpack = {
  integer(prefixBits: number, flags: number, value: number): Buffer {
    const mask = (1 << prefixBits) - 1;
    if (value < mask) return Buffer.from([flags | value]);
    const out = [flags | mask];
    let rest = value - mask;
    while (rest >= 0x80) {
      out.push((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    out.push(rest);
    return Buffer.from(out);
  },
  string(text: string, huffman = false): Buffer {
    const bytes = huffman ? huffmanEncode(text) : Buffer.from(text, 'latin1');
    return Buffer.concat([hpack.integer(7, huffman ? 0x80 : 0, bytes.length), bytes]);
  },
  /** Indexed field (static 1–61, dynamic 62+). */
  indexed(index: number): Buffer {
    return hpack.integer(7, 0x80, index);
  },
  /** Literal with incremental indexing, new name. */
  incremental(name: string, value: string, huffman = false): Buffer {
    return Buffer.concat([Buffer.from([0x40]), hpack.string(name, huffman), hpack.string(value, huffman)]);
  },
  /** Literal without indexing (never indexed when `never`), name from a table index or literal. */
  literal(name: string | number, value: string, { huffman = false, never = false } = {}): Buffer {
    const flags = never ? 0x10 : 0x00;
    if (typeof name === 'number') return Buffer.concat([hpack.integer(4, flags, name), hpack.string(value, huffman)]);
    return Buffer.concat([Buffer.from([flags]), hpack.string(name, huffman), hpack.string(value, huffman)]);
  },
  sizeUpdate(size: number): Buffer {
    return hpack.integer(5, 0x20, size);
  },
};

/** The header block of a gRPC request: method POST, scheme http, the path, te and content-type, then `authority` fields. */
export function grpcRequestBlock(path: string, authority: Buffer | undefined): Buffer {
  return Buffer.concat([
    hpack.indexed(3), // :method POST
    hpack.indexed(6), // :scheme http
    hpack.literal(4, path), // :path
    ...(authority ? [authority] : []),
    hpack.literal('content-type', 'application/grpc'),
    hpack.literal('te', 'trailers'),
  ]);
}

export interface HeadersFrameOptions {
  endStream?: boolean;
  /** Pad length: the frame gets the PADDED flag and this many zero octets. */
  pad?: number;
  /** Give the frame the PRIORITY flag (exclusive=0, depends on 0, weight 16). */
  priority?: boolean;
  /** Split the block into HEADERS + CONTINUATION frames of at most this many octets. */
  fragment?: number;
}

export function headersFrames(streamId: number, block: Buffer, options: HeadersFrameOptions = {}): Buffer {
  const size = Math.min(options.fragment ?? MAX_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD);
  const pieces: Buffer[] = [];
  for (let i = 0; i < block.length || pieces.length === 0; i += size) pieces.push(block.subarray(i, i + size));
  const out: Buffer[] = [];
  for (const [i, piece] of pieces.entries()) {
    const last = i === pieces.length - 1;
    if (i === 0) {
      const pad = options.pad;
      const prefix = [
        ...(pad !== undefined ? [Buffer.from([pad])] : []),
        ...(options.priority ? [Buffer.from([0, 0, 0, 0, 15])] : []),
      ];
      const flags = (options.endStream ? Flag.END_STREAM : 0) | (last ? Flag.END_HEADERS : 0)
        | (pad !== undefined ? Flag.PADDED : 0) | (options.priority ? Flag.PRIORITY : 0);
      const payload = Buffer.concat([...prefix, piece, Buffer.alloc(pad ?? 0)]);
      out.push(frameHeader(payload.length, FrameType.HEADERS, flags, streamId), payload);
    } else {
      out.push(frameHeader(piece.length, FrameType.CONTINUATION, last ? Flag.END_HEADERS : 0, streamId), piece);
    }
  }
  return Buffer.concat(out);
}

/** A DATA frame with one gRPC message (uncompressed), ending the stream. */
export function grpcDataFrame(streamId: number, message: Uint8Array): Buffer {
  const payload = Buffer.alloc(5 + message.length);
  payload.writeUInt32BE(message.length, 1);
  payload.set(message, 5);
  return Buffer.concat([frameHeader(payload.length, FrameType.DATA, Flag.END_STREAM, streamId), payload]);
}

export const SETTINGS_ACK = frameHeader(0, FrameType.SETTINGS, Flag.ACK, 0);

export class RawHttp2Client {
  readonly streams = new Map<number, StreamResult>();
  /** Error code of a GOAWAY received, if any. */
  goAwayCode: number | undefined;
  /** SETTINGS frames (not ACKs) received. */
  settingsReceived = 0;
  /** SETTINGS received before start(): acknowledged right after the preface. */
  private unacked = 0;
  readonly closed: Promise<void>;
  private readonly socket: net.Socket;
  private readonly decoder = new HpackDecoder();
  private buffer = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  private open: { streamId: number; fragments: Buffer[] } | undefined;
  private isClosed = false;
  /** Whether the preface went out (no ACK may precede it). */
  private started = false;

  /** `autoAck`: answer every server SETTINGS with an ACK as soon as it arrives (what real clients do). */
  constructor(path: string, private readonly autoAck = true) {
    this.socket = net.connect(path);
    this.closed = new Promise((resolve) => this.socket.once('close', () => { this.isClosed = true; this.notify(); resolve(); }));
    this.socket.on('error', () => undefined);
    this.socket.on('data', (d: Buffer) => this.onData(d));
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Preface and an empty SETTINGS frame. */
  start(): void {
    this.started = true;
    this.write(Buffer.concat([CLIENT_PREFACE, EMPTY_SETTINGS_FRAME]));
    for (; this.unacked > 0; this.unacked--) this.write(SETTINGS_ACK);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Waits until `condition` holds or the connection closes (bounded). */
  async until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (this.isClosed) throw new Error(`connection closed while waiting for ${what} (GOAWAY ${this.goAwayCode})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  /** Waits for the end of a stream (END_STREAM or RST_STREAM). */
  async response(streamId: number): Promise<StreamResult> {
    await this.until(`stream ${streamId}`, () => {
      const s = this.streams.get(streamId);
      return s !== undefined && (s.ended || s.rstCode !== undefined);
    });
    return this.streams.get(streamId)!;
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private stream(id: number): StreamResult {
    let s = this.streams.get(id);
    if (!s) this.streams.set(id, (s = { headerBlocks: [], data: Buffer.alloc(0), ended: false }));
    return s;
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    let off = 0;
    while (this.buffer.length - off >= 9) {
      const length = this.buffer.readUIntBE(off, 3);
      if (this.buffer.length - off < 9 + length) break;
      const type = this.buffer[off + 3]!;
      const flags = this.buffer[off + 4]!;
      const streamId = this.buffer.readUInt32BE(off + 5) & 0x7fffffff;
      const payload = this.buffer.subarray(off + 9, off + 9 + length);
      off += 9 + length;
      this.frame(type, flags, streamId, payload);
    }
    this.buffer = this.buffer.subarray(off);
    this.notify();
  }

  private frame(type: number, flags: number, streamId: number, payload: Buffer): void {
    switch (type) {
      case FrameType.SETTINGS:
        if (!(flags & Flag.ACK)) {
          this.settingsReceived++;
          if (this.autoAck && this.started) this.write(SETTINGS_ACK);
          else if (this.autoAck) this.unacked++;
        }
        return;
      case FrameType.HEADERS:
      case FrameType.CONTINUATION: {
        let p = payload;
        if (type === FrameType.HEADERS) {
          const pad = flags & Flag.PADDED ? p[0]! : 0;
          if (flags & Flag.PADDED) p = p.subarray(1);
          if (flags & Flag.PRIORITY) p = p.subarray(5);
          p = p.subarray(0, p.length - pad);
          this.open = { streamId, fragments: [] };
          if (flags & Flag.END_STREAM) this.stream(streamId).ended = true;
        }
        this.open!.fragments.push(Buffer.from(p));
        if (flags & Flag.END_HEADERS) {
          this.stream(streamId).headerBlocks.push(this.decoder.decode(Buffer.concat(this.open!.fragments)));
          this.open = undefined;
        }
        return;
      }
      case FrameType.DATA: {
        const s = this.stream(streamId);
        s.data = Buffer.concat([s.data, payload]);
        if (flags & Flag.END_STREAM) s.ended = true;
        return;
      }
      case FrameType.RST_STREAM:
        this.stream(streamId).rstCode = payload.readUInt32BE(0);
        return;
      case FrameType.GOAWAY:
        this.goAwayCode = payload.readUInt32BE(4);
        return;
      case FrameType.PING:
        if (!(flags & Flag.ACK)) this.write(Buffer.concat([frameHeader(8, FrameType.PING, Flag.ACK, 0), payload]));
        return;
      default:
    }
  }
}

/** The value of a header field in a block (first one), or undefined. */
export function headerValue(block: HeaderField[] | undefined, name: string): string | undefined {
  return block?.find((f) => f.name === name)?.value;
}

/** The first gRPC message in a response's DATA (the 5-byte prefix stripped). */
export function grpcMessage(result: StreamResult): Buffer {
  const length = result.data.readUInt32BE(1);
  return result.data.subarray(5, 5 + length);
}
