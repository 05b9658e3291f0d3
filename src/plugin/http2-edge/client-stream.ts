// The client→server bytes of one HTTP/2 connection, parsed frame by frame (preface, frame headers,
// header blocks with their padding, priority and CONTINUATION frames). Two modes:
//
// - hold: nothing is forwarded. Frames are kept as they came, header blocks are decoded (HPACK,
//   with the client's dynamic table mirrored), and verdict() says whether the connection can go to
//   nghttp2 natively (its bytes replayed exactly, less the ACK of our synthetic SETTINGS), must be
//   repaired, or needs more bytes.
// - repair: every frame is forwarded as it came, except header blocks, which are re-encoded with
//   a repaired :authority and without touching the server's dynamic table (hpack.ts), and the
//   ACK of our SETTINGS, which is dropped (nghttp2 never sent those SETTINGS: an ACK it did not
//   expect is a connection error).
//
// In hold mode a malformed byte stream is not our call: the verdict is `native` and nghttp2 answers
// it exactly as it did before the edge existed. In repair mode it throws PLUGIN_HTTP2_MALFORMED
// and the caller closes that connection.
import { PluginError } from '../errors.js';
import { repairAuthority, type AuthorityRepair } from './authority.js';
import { CLIENT_PREFACE, Flag, FRAME_HEADER_BYTES, FrameType, headerBlockFrames, MAX_FRAME_PAYLOAD } from './frames.js';
import { encodeWithoutIndexing, HpackDecoder, type HeaderField } from './hpack.js';

/** Largest header block (all its fragments, compressed) accepted; Node's default header list limit is 64 KiB. */
const MAX_HEADER_BLOCK_BYTES = 64 * 1024;

export type Verdict = 'wait' | 'native' | 'repair';

interface OpenBlock {
  streamId: number;
  endStream: boolean;
  priority: Buffer | undefined;
  fragments: Buffer[];
  bytes: number;
}

interface DecodedBlock {
  streamId: number;
  endStream: boolean;
  priority: Buffer | undefined;
  fields: HeaderField[];
}

/** A held piece, for a switch to repair: raw frames or a decoded header block. */
type Held = { kind: 'raw'; bytes: Buffer } | { kind: 'block'; block: DecodedBlock };

function malformed(message: string): PluginError {
  return new PluginError('PLUGIN_HTTP2_MALFORMED', message);
}

export interface ClientStreamOptions {
  /** Called once, at the first header block whose authority is repaired. */
  onFirstRepair: (repair: AuthorityRepair) => void;
  /** Most bytes held before a verdict; past it the connection is repaired (default 64 KiB). */
  maxHeldBytes?: number;
}

export class ClientStream {
  private mode: 'hold' | 'repair' = 'hold';
  private readonly decoder = new HpackDecoder();
  private prefaceMatched = 0;
  private partial: Buffer | undefined;
  private block: OpenBlock | undefined;
  private ackSeen = false;
  private repaired = false;
  /** Offset in the client's byte stream of the first byte of `partial` (or of the next chunk). */
  private offset = 0;
  // hold mode
  private held: Held[] = [];
  /** Every chunk received, as received (for a native replay). */
  private received: Buffer[] = [];
  private heldBytes = 0;
  /** Where the ACK of our SETTINGS sits in the byte stream, once seen. */
  private ackAt: number | undefined;
  private sawBlock = false;
  private needsRepair = false;
  private holdMalformed = false;
  // repair mode: what feed() returns
  private out: Buffer[] = [];

  constructor(private readonly options: ClientStreamOptions) {}

  /** Hold mode: the decision so far. */
  verdict(): Verdict {
    if (this.holdMalformed) return 'native';
    if (this.needsRepair) return 'repair';
    if (this.sawBlock && this.ackSeen) return 'native';
    if (this.heldBytes > (this.options.maxHeldBytes ?? 64 * 1024)) return 'repair';
    return 'wait';
  }

  /**
   * Takes the next bytes from the client. Hold mode: keeps them, returns []. Repair mode: returns
   * what to hand to nghttp2 (throws PLUGIN_HTTP2_MALFORMED on a malformed stream).
   */
  feed(chunk: Buffer): Buffer[] {
    if (this.mode === 'hold') {
      this.received.push(chunk);
      this.heldBytes += chunk.length;
      if (this.holdMalformed) return [];
      try {
        this.parse(chunk);
      } catch (err) {
        if (!(err instanceof PluginError)) throw err;
        this.holdMalformed = true;
      }
      return [];
    }
    this.parse(chunk);
    const out = this.out;
    this.out = [];
    return out;
  }

  /** Hold mode → native: the bytes received, exactly, less the ACK of our SETTINGS. */
  nativeBytes(): Buffer {
    const all = Buffer.concat(this.received);
    this.received = [];
    this.held = [];
    if (this.ackAt === undefined) return all;
    return Buffer.concat([all.subarray(0, this.ackAt), all.subarray(this.ackAt + FRAME_HEADER_BYTES)]);
  }

  /** Hold mode → repair: what to hand to nghttp2 first; feed() returns the rest from now on. */
  startRepair(): Buffer[] {
    this.mode = 'repair';
    this.received = [];
    const out: Buffer[] = [];
    for (const h of this.held) {
      if (h.kind === 'raw') out.push(h.bytes);
      else if (h.kind === 'block') out.push(...this.encode(h.block));
    }
    this.held = [];
    return out;
  }

  private emitRaw(bytes: Buffer): void {
    if (this.mode === 'hold') this.held.push({ kind: 'raw', bytes });
    else this.out.push(bytes);
  }

  private parse(chunk: Buffer): void {
    let data = this.partial ? Buffer.concat([this.partial, chunk]) : chunk;
    this.partial = undefined;
    if (this.prefaceMatched < CLIENT_PREFACE.length) {
      const n = Math.min(CLIENT_PREFACE.length - this.prefaceMatched, data.length);
      if (!data.subarray(0, n).equals(CLIENT_PREFACE.subarray(this.prefaceMatched, this.prefaceMatched + n))) {
        throw malformed('the connection does not start with the HTTP/2 client preface');
      }
      this.prefaceMatched += n;
      this.emitRaw(data.subarray(0, n));
      data = data.subarray(n);
      this.offset += n;
    }
    let off = 0;
    while (data.length - off >= FRAME_HEADER_BYTES) {
      const length = data.readUIntBE(off, 3);
      if (length > MAX_FRAME_PAYLOAD) throw malformed(`a frame of ${length} bytes, above the ${MAX_FRAME_PAYLOAD} allowed`);
      const end = off + FRAME_HEADER_BYTES + length;
      if (end > data.length) break;
      this.frame(data.subarray(off, end), data[off + 3]!, data[off + 4]!, data.readUInt32BE(off + 5) & 0x7fffffff, this.offset + off);
      off = end;
    }
    this.offset += off;
    if (off < data.length) this.partial = data.subarray(off);
  }

  private frame(raw: Buffer, type: number, flags: number, streamId: number, at: number): void {
    const payload = raw.subarray(FRAME_HEADER_BYTES);
    if (this.block) {
      if (type !== FrameType.CONTINUATION || streamId !== this.block.streamId) throw malformed('a header block is interrupted by another frame');
      this.addFragment(payload);
      if (flags & Flag.END_HEADERS) this.completeBlock();
      return;
    }
    switch (type) {
      case FrameType.HEADERS: {
        let p = payload;
        let pad = 0;
        if (flags & Flag.PADDED) {
          if (p.length < 1) throw malformed('HEADERS frame too short for its padding');
          pad = p[0]!;
          p = p.subarray(1);
        }
        let priority: Buffer | undefined;
        if (flags & Flag.PRIORITY) {
          if (p.length < 5) throw malformed('HEADERS frame too short for its priority');
          priority = p.subarray(0, 5);
          p = p.subarray(5);
        }
        if (pad > p.length) throw malformed('HEADERS padding longer than the frame');
        this.block = { streamId, endStream: (flags & Flag.END_STREAM) !== 0, priority, fragments: [], bytes: 0 };
        this.addFragment(p.subarray(0, p.length - pad));
        if (flags & Flag.END_HEADERS) this.completeBlock();
        return;
      }
      case FrameType.CONTINUATION:
        throw malformed('CONTINUATION frame without a header block');
      case FrameType.PUSH_PROMISE:
        throw malformed('PUSH_PROMISE frame from a client');
      case FrameType.SETTINGS:
        if ((flags & Flag.ACK) && !this.ackSeen) {
          if (payload.length !== 0 || streamId !== 0) throw malformed('a SETTINGS ACK with a payload or a stream');
          // The first ACK answers our synthetic SETTINGS: it was written before nghttp2 wrote any.
          this.ackSeen = true;
          if (this.mode === 'hold') this.ackAt = at;
          return;
        }
        this.emitRaw(raw);
        return;
      default:
        this.emitRaw(raw);
    }
  }

  private addFragment(fragment: Buffer): void {
    const block = this.block!;
    block.fragments.push(fragment);
    block.bytes += fragment.length;
    if (block.bytes > MAX_HEADER_BLOCK_BYTES) throw malformed(`a header block larger than ${MAX_HEADER_BLOCK_BYTES} bytes`);
  }

  private completeBlock(): void {
    const open = this.block!;
    this.block = undefined;
    const bytes = open.fragments.length === 1 ? open.fragments[0]! : Buffer.concat(open.fragments);
    const block: DecodedBlock = { streamId: open.streamId, endStream: open.endStream, priority: open.priority, fields: this.decoder.decode(bytes) };
    if (this.mode === 'hold') {
      this.sawBlock = true;
      if (repairAuthority(block.fields)) this.needsRepair = true;
      this.held.push({ kind: 'block', block });
    } else {
      this.out.push(...this.encode(block));
    }
  }

  private encode(block: DecodedBlock): Buffer[] {
    const repair = repairAuthority(block.fields);
    if (repair && !this.repaired) {
      this.repaired = true;
      this.options.onFirstRepair(repair);
    }
    return headerBlockFrames(block.streamId, block.endStream, block.priority, encodeWithoutIndexing(repair?.fields ?? block.fields));
  }
}
