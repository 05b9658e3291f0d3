// KMIP 1.x TTLV (Tag-Type-Length-Value) encoding, OASIS KMIP spec section 9.1.
// Every item: tag (3 bytes, big-endian), type (1 byte), length (4 bytes, the unpadded value length),
// value padded with zeros to a multiple of 8 bytes. Structures hold a sequence of items.
// The decoder is strict (exact fixed lengths, zero padding, valid UTF-8, structures exactly filled)
// and bounded (depth, message size and item count caps), and fails only with KmipError.
import { KmipError } from './errors.js';

export const ItemType = {
  Structure: 0x01,
  Integer: 0x02,
  LongInteger: 0x03,
  BigInteger: 0x04,
  Enumeration: 0x05,
  Boolean: 0x06,
  TextString: 0x07,
  ByteString: 0x08,
  DateTime: 0x09,
  Interval: 0x0a,
} as const;
export type ItemTypeCode = (typeof ItemType)[keyof typeof ItemType];

export type TtlvItem =
  | { tag: number; type: typeof ItemType.Structure; value: TtlvItem[] }
  | { tag: number; type: typeof ItemType.Integer; value: number }
  | { tag: number; type: typeof ItemType.LongInteger; value: bigint }
  | { tag: number; type: typeof ItemType.BigInteger; value: bigint }
  | { tag: number; type: typeof ItemType.Enumeration; value: number }
  | { tag: number; type: typeof ItemType.Boolean; value: boolean }
  | { tag: number; type: typeof ItemType.TextString; value: string }
  | { tag: number; type: typeof ItemType.ByteString; value: Buffer }
  /** Seconds since the Unix epoch (signed 64-bit). */
  | { tag: number; type: typeof ItemType.DateTime; value: bigint }
  /** Seconds (unsigned 32-bit). */
  | { tag: number; type: typeof ItemType.Interval; value: number };

export const TYPE_NAMES: Readonly<Record<number, string>> = {
  1: 'Structure',
  2: 'Integer',
  3: 'Long Integer',
  4: 'Big Integer',
  5: 'Enumeration',
  6: 'Boolean',
  7: 'Text String',
  8: 'Byte String',
  9: 'Date-Time',
  10: 'Interval',
};

export interface DecodeLimits {
  /** Largest accepted message, header included. */
  maxBytes: number;
  /** Deepest structure nesting (the outer message is depth 1). */
  maxDepth: number;
  /** Most items in the whole message. */
  maxItems: number;
}

export const DEFAULT_DECODE_LIMITS: DecodeLimits = { maxBytes: 1 << 20, maxDepth: 16, maxItems: 10_000 };

const HEADER = 8;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
/** Big Integers above this many bytes are refused (8192-bit is far above any KMIP use we have). */
const MAX_BIG_INTEGER_BYTES = 1024;

// Arithmetic, not bitwise: lengths up to 2^32 - 1 must not wrap to negative numbers.
const pad8 = (n: number): number => n + ((8 - (n % 8)) % 8);

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

// ---------- builders ----------

export const struct = (tag: number, value: TtlvItem[]): TtlvItem => ({ tag, type: ItemType.Structure, value });
export const integer = (tag: number, value: number): TtlvItem => ({ tag, type: ItemType.Integer, value });
export const longInteger = (tag: number, value: bigint): TtlvItem => ({ tag, type: ItemType.LongInteger, value });
export const bigInteger = (tag: number, value: bigint): TtlvItem => ({ tag, type: ItemType.BigInteger, value });
export const enumeration = (tag: number, value: number): TtlvItem => ({ tag, type: ItemType.Enumeration, value });
export const boolean = (tag: number, value: boolean): TtlvItem => ({ tag, type: ItemType.Boolean, value });
export const text = (tag: number, value: string): TtlvItem => ({ tag, type: ItemType.TextString, value });
export const bytes = (tag: number, value: Uint8Array): TtlvItem => ({
  tag,
  type: ItemType.ByteString,
  value: Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength),
});
export const dateTime = (tag: number, value: bigint): TtlvItem => ({ tag, type: ItemType.DateTime, value });
export const interval = (tag: number, value: number): TtlvItem => ({ tag, type: ItemType.Interval, value });

// ---------- encoder ----------

const hexTag = (tag: number): string => '0x' + tag.toString(16).toUpperCase().padStart(6, '0');

function encodeFail(item: TtlvItem, why: string): never {
  throw new KmipError('KMIP_ENCODE', `cannot encode ${TYPE_NAMES[item.type] ?? 'item'} ${hexTag(item.tag)}: ${why}`);
}

/** Minimal two's-complement big-endian bytes of `v`, sign-extended to a multiple of 8 bytes. */
function bigIntBytes(v: bigint): Buffer {
  let hex = (v < 0n ? -v - 1n : v).toString(16);
  if (hex.length % 2 === 1) hex = '0' + hex;
  let mag = Buffer.from(hex, 'hex');
  // Keep a sign bit of zero in the magnitude so the sign extension below is unambiguous.
  if (mag.length === 0 || (mag[0]! & 0x80) !== 0) mag = Buffer.concat([Buffer.alloc(1), mag]);
  const len = pad8(mag.length);
  const out = Buffer.alloc(len);
  mag.copy(out, len - mag.length);
  if (v < 0n) for (let i = 0; i < len; i++) out[i] = ~out[i]! & 0xff;
  return out;
}

/** Encoded size of an item, header and padding included. */
function sizeOf(item: TtlvItem): number {
  switch (item.type) {
    case ItemType.Structure: {
      let n = 0;
      for (const c of item.value) n += sizeOf(c);
      return HEADER + n;
    }
    case ItemType.Integer:
    case ItemType.Enumeration:
    case ItemType.Interval:
    case ItemType.LongInteger:
    case ItemType.Boolean:
    case ItemType.DateTime:
      return HEADER + 8;
    case ItemType.BigInteger:
      return HEADER + bigIntBytes(item.value).length;
    case ItemType.TextString:
      return HEADER + pad8(Buffer.byteLength(item.value, 'utf8'));
    case ItemType.ByteString:
      return HEADER + pad8(item.value.length);
    default:
      return encodeFail(item as TtlvItem, 'unknown item type');
  }
}

function writeItem(item: TtlvItem, out: Buffer, at: number): number {
  if (!Number.isInteger(item.tag) || item.tag < 0 || item.tag > 0xffffff) encodeFail(item, 'tag is not a 3-byte value');
  out.writeUIntBE(item.tag, at, 3);
  out[at + 3] = item.type;
  const v = at + HEADER;
  switch (item.type) {
    case ItemType.Structure: {
      let p = v;
      for (const c of item.value) p = writeItem(c, out, p);
      out.writeUInt32BE(p - v, at + 4);
      return p;
    }
    case ItemType.Integer:
      if (!Number.isInteger(item.value) || item.value < -0x80000000 || item.value > 0x7fffffff) encodeFail(item, 'not a signed 32-bit integer');
      out.writeUInt32BE(4, at + 4);
      out.writeInt32BE(item.value, v);
      return v + 8;
    case ItemType.Enumeration:
    case ItemType.Interval:
      if (!Number.isInteger(item.value) || item.value < 0 || item.value > 0xffffffff) encodeFail(item, 'not an unsigned 32-bit integer');
      out.writeUInt32BE(4, at + 4);
      out.writeUInt32BE(item.value, v);
      return v + 8;
    case ItemType.LongInteger:
    case ItemType.DateTime:
      if (item.value < INT64_MIN || item.value > INT64_MAX) encodeFail(item, 'not a signed 64-bit integer');
      out.writeUInt32BE(8, at + 4);
      out.writeBigInt64BE(item.value, v);
      return v + 8;
    case ItemType.Boolean:
      out.writeUInt32BE(8, at + 4);
      out.writeBigUInt64BE(item.value ? 1n : 0n, v);
      return v + 8;
    case ItemType.BigInteger: {
      const b = bigIntBytes(item.value);
      out.writeUInt32BE(b.length, at + 4);
      b.copy(out, v);
      return v + b.length;
    }
    case ItemType.TextString: {
      if (LONE_SURROGATE.test(item.value)) encodeFail(item, 'not well-formed Unicode (lone surrogate)');
      const n = out.write(item.value, v, 'utf8');
      out.writeUInt32BE(n, at + 4);
      return v + pad8(n);
    }
    case ItemType.ByteString:
      out.writeUInt32BE(item.value.length, at + 4);
      item.value.copy(out, v);
      return v + pad8(item.value.length);
    default:
      return encodeFail(item as TtlvItem, 'unknown item type');
  }
}

/** Encodes one item (usually a Request Message structure) to bytes. */
export function encodeTtlv(item: TtlvItem): Buffer {
  const size = sizeOf(item);
  if (size > 0xffffffff) encodeFail(item, 'too large');
  const out = Buffer.alloc(size); // zero-filled: padding is zero
  const end = writeItem(item, out, 0);
  if (end !== size) encodeFail(item, 'internal size mismatch');
  return out;
}

// ---------- decoder ----------

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function malformed(offset: number, why: string): never {
  throw new KmipError('KMIP_MALFORMED', `malformed TTLV at byte ${offset}: ${why}`, { offset });
}

function checkZeroPadding(buf: Buffer, from: number, to: number, itemAt: number): void {
  for (let i = from; i < to; i++) if (buf[i] !== 0) malformed(itemAt, `non-zero padding byte at ${i}`);
}

class Decoder {
  private items = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly limits: DecodeLimits,
  ) {}

  /** Decodes the item at `at` that must end by `limit`; returns it and the offset after it. */
  item(at: number, limit: number, depth: number): [TtlvItem, number] {
    const buf = this.buf;
    if (++this.items > this.limits.maxItems) malformed(at, `more than ${this.limits.maxItems} items`);
    if (limit - at < HEADER) malformed(at, `truncated item header (${limit - at} of 8 bytes)`);
    const tag = buf.readUIntBE(at, 3);
    // KMIP tags are 0x42xxxx (defined) or 0x54xxxx (extensions).
    if (buf[at] !== 0x42 && buf[at] !== 0x54) malformed(at, `tag ${hexTag(tag)} is not a KMIP tag`);
    const type = buf[at + 3]!;
    const length = buf.readUInt32BE(at + 4);
    const v = at + HEADER;
    const room = limit - v;
    const need = (n: number): void => {
      if (length !== n) malformed(at, `${TYPE_NAMES[type]} ${hexTag(tag)} has length ${length}, expected ${n}`);
      if (room < 8) malformed(at, `truncated ${TYPE_NAMES[type]} ${hexTag(tag)}`);
    };
    switch (type) {
      case ItemType.Structure: {
        if (length % 8 !== 0) malformed(at, `Structure ${hexTag(tag)} length ${length} is not a multiple of 8`);
        if (length > room) malformed(at, `Structure ${hexTag(tag)} length ${length} exceeds the ${room} bytes available`);
        if (depth >= this.limits.maxDepth) malformed(at, `nesting deeper than ${this.limits.maxDepth}`);
        const end = v + length;
        const value: TtlvItem[] = [];
        let p = v;
        while (p < end) {
          const [child, next] = this.item(p, end, depth + 1);
          value.push(child);
          p = next;
        }
        return [{ tag, type, value }, end];
      }
      case ItemType.Integer:
        need(4);
        checkZeroPadding(buf, v + 4, v + 8, at);
        return [{ tag, type, value: buf.readInt32BE(v) }, v + 8];
      case ItemType.Enumeration:
      case ItemType.Interval:
        need(4);
        checkZeroPadding(buf, v + 4, v + 8, at);
        return [{ tag, type, value: buf.readUInt32BE(v) }, v + 8];
      case ItemType.LongInteger:
      case ItemType.DateTime:
        need(8);
        return [{ tag, type, value: buf.readBigInt64BE(v) }, v + 8];
      case ItemType.Boolean: {
        need(8);
        const b = buf.readBigUInt64BE(v);
        if (b > 1n) malformed(at, `Boolean ${hexTag(tag)} is neither 0 nor 1`);
        return [{ tag, type, value: b === 1n }, v + 8];
      }
      case ItemType.BigInteger: {
        if (length === 0 || length % 8 !== 0) malformed(at, `Big Integer ${hexTag(tag)} length ${length} is not a positive multiple of 8`);
        if (length > MAX_BIG_INTEGER_BYTES) malformed(at, `Big Integer ${hexTag(tag)} longer than ${MAX_BIG_INTEGER_BYTES} bytes`);
        if (length > room) malformed(at, `truncated Big Integer ${hexTag(tag)}`);
        const raw = buf.subarray(v, v + length);
        let value = BigInt('0x' + raw.toString('hex'));
        if ((raw[0]! & 0x80) !== 0) value -= 1n << BigInt(length * 8);
        return [{ tag, type, value }, v + length];
      }
      case ItemType.TextString:
      case ItemType.ByteString: {
        const padded = pad8(length);
        if (length > this.limits.maxBytes || padded > room) malformed(at, `${TYPE_NAMES[type]} ${hexTag(tag)} length ${length} exceeds the ${room} bytes available`);
        checkZeroPadding(buf, v + length, v + padded, at);
        const raw = buf.subarray(v, v + length);
        if (type === ItemType.ByteString) return [{ tag, type, value: Buffer.from(raw) }, v + padded];
        let s: string;
        try {
          s = utf8.decode(raw);
        } catch {
          malformed(at, `Text String ${hexTag(tag)} is not valid UTF-8`);
        }
        return [{ tag, type, value: s }, v + padded];
      }
      default:
        return malformed(at, `unknown item type 0x${type.toString(16).padStart(2, '0')} for tag ${hexTag(tag)}`);
    }
  }
}

/**
 * Total size (header included) of the TTLV message whose first 8 bytes are `header`, for framing a
 * stream; refuses non-structures and messages above `maxBytes` before anything else is read.
 */
export function ttlvMessageSize(header: Uint8Array, maxBytes = DEFAULT_DECODE_LIMITS.maxBytes): number {
  if (header.length < HEADER) malformed(0, 'truncated message header');
  if (header[0] !== 0x42) malformed(0, 'message does not start with a KMIP tag');
  if (header[3] !== ItemType.Structure) malformed(0, 'message is not a Structure');
  const length = Buffer.from(header.buffer, header.byteOffset, HEADER).readUInt32BE(4);
  if (length % 8 !== 0) malformed(0, `message length ${length} is not a multiple of 8`);
  if (length + HEADER > maxBytes) malformed(0, `message of ${length + HEADER} bytes exceeds the ${maxBytes}-byte limit`);
  return length + HEADER;
}

/** Decodes exactly one item filling all of `data`. Throws only KmipError. */
export function decodeTtlv(data: Uint8Array, limits: Partial<DecodeLimits> = {}): TtlvItem {
  const lim: DecodeLimits = { ...DEFAULT_DECODE_LIMITS, ...limits };
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length > lim.maxBytes) malformed(0, `message of ${buf.length} bytes exceeds the ${lim.maxBytes}-byte limit`);
  const [item, end] = new Decoder(buf, lim).item(0, buf.length, 0);
  if (end !== buf.length) malformed(end, `${buf.length - end} trailing bytes after the message`);
  return item;
}

// ---------- readers for decoded structures ----------

/** The first child of `s` with `tag`, or undefined. */
export function child(s: TtlvItem, tag: number): TtlvItem | undefined {
  if (s.type !== ItemType.Structure) return undefined;
  return s.value.find((c) => c.tag === tag);
}

/** Every child of `s` with `tag`. */
export function children(s: TtlvItem, tag: number): TtlvItem[] {
  if (s.type !== ItemType.Structure) return [];
  return s.value.filter((c) => c.tag === tag);
}

type ValueOf<T extends ItemTypeCode> = Extract<TtlvItem, { type: T }>['value'];

/** The value of the first child with `tag`, checked to be of `type`; undefined when absent. */
export function optional<T extends ItemTypeCode>(s: TtlvItem, tag: number, type: T, what: string): ValueOf<T> | undefined {
  const c = child(s, tag);
  if (c === undefined) return undefined;
  if (c.type !== type) {
    throw new KmipError('KMIP_PROTOCOL', `${what} (${hexTag(tag)}) is a ${TYPE_NAMES[c.type]}, expected ${TYPE_NAMES[type]}`);
  }
  return c.value as never;
}

/** Like `optional`, but a missing field is a KMIP_PROTOCOL error naming `what`. */
export function required<T extends ItemTypeCode>(s: TtlvItem, tag: number, type: T, what: string): ValueOf<T> {
  const v: ValueOf<T> | undefined = optional(s, tag, type, what);
  if (v === undefined) throw new KmipError('KMIP_PROTOCOL', `missing ${what} (${hexTag(tag)}) in the server's response`);
  return v;
}
