// HTTP/2 framing constants and the few frame writers the connection edge needs (RFC 9113 §4, §6).

/** What every client sends first (RFC 9113 §3.4). */
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FRAME_HEADER_BYTES = 9;

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  /** On SETTINGS and PING. */
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/**
 * The smallest SETTINGS_MAX_FRAME_SIZE a receiver may announce, and what Node's HTTP/2 server
 * announces: no frame we write is larger, and no frame a client may send us is either.
 */
export const MAX_FRAME_PAYLOAD = 16_384;

export function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return h;
}

/** An empty SETTINGS frame: a server connection preface that changes no default. */
export const EMPTY_SETTINGS_FRAME = frameHeader(0, FrameType.SETTINGS, 0, 0);

/**
 * A header block as HEADERS (+ CONTINUATION) frames of at most MAX_FRAME_PAYLOAD octets, without
 * padding. `priority` is the 5-octet priority field of the original HEADERS frame, if it had one.
 */
export function headerBlockFrames(streamId: number, endStream: boolean, priority: Buffer | undefined, block: Buffer): Buffer[] {
  const out: Buffer[] = [];
  const firstRoom = MAX_FRAME_PAYLOAD - (priority ? priority.length : 0);
  const first = block.subarray(0, firstRoom);
  let rest = block.subarray(first.length);
  let flags = (endStream ? Flag.END_STREAM : 0) | (priority ? Flag.PRIORITY : 0) | (rest.length === 0 ? Flag.END_HEADERS : 0);
  out.push(frameHeader(first.length + (priority ? priority.length : 0), FrameType.HEADERS, flags, streamId));
  if (priority) out.push(priority);
  out.push(first);
  while (rest.length > 0) {
    const piece = rest.subarray(0, MAX_FRAME_PAYLOAD);
    rest = rest.subarray(piece.length);
    flags = rest.length === 0 ? Flag.END_HEADERS : 0;
    out.push(frameHeader(piece.length, FrameType.CONTINUATION, flags, streamId), piece);
  }
  return out;
}
