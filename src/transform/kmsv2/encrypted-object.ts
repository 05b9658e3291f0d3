// The kms v2 storage envelope `EncryptedObject` (format.md §1.6; proto/kmsv2/encrypted_object.proto),
// hand-coded because it sits on every read and write: wire-identical to the generated
// `EncryptedObjectSchema` codec (test/transform/kmsv2-codec.test.ts checks both ways), several
// times faster. Writes emit fields in number order, map entries sorted by key, and omit proto3
// zero values; reads accept any field and map-entry order, repeated fields (last wins, map entries
// merge), unknown fields, and reject invalid UTF-8 in strings as protobuf-go does.
import { EnvelopeError } from '../../kms/errors.js';

/** `EncryptedDEKSourceType`: the DEK source is an AES-GCM key (1.27) or an HKDF seed (1.28+). */
export const AES_GCM_KEY = 0;
export const HKDF_SHA256_XNONCE_AES_GCM_SEED = 1;

export interface EncryptedObject {
  encryptedData: Uint8Array;
  keyID: string;
  encryptedDEKSource: Uint8Array;
  annotations: Record<string, Uint8Array>;
  encryptedDEKSourceType: number;
}

const ERR_WIRE = 'proto: cannot parse invalid wire-format data';
const utf8 = new TextDecoder('utf-8', { fatal: true });

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    out[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  out[pos++] = n;
  return pos;
}

function fieldSize(len: number): number {
  return 1 + varintSize(len) + len;
}

export function encodeEncryptedObject(o: EncryptedObject): Buffer {
  const keyID = Buffer.from(o.keyID, 'utf8');
  const keys = Object.keys(o.annotations).sort();
  const entries: Array<{ key: Buffer; value: Uint8Array; size: number }> = [];
  let size = 0;
  if (o.encryptedData.length) size += fieldSize(o.encryptedData.length);
  if (keyID.length) size += fieldSize(keyID.length);
  if (o.encryptedDEKSource.length) size += fieldSize(o.encryptedDEKSource.length);
  for (const k of keys) {
    const key = Buffer.from(k, 'utf8');
    const value = o.annotations[k] as Uint8Array;
    // Go writes both map-entry fields even when empty.
    const entrySize = fieldSize(key.length) + fieldSize(value.length);
    entries.push({ key, value, size: entrySize });
    size += fieldSize(entrySize);
  }
  const type = o.encryptedDEKSourceType;
  // An enum is an int32 on the wire: negative values take 10 bytes (two's complement, sign-extended).
  const typeWire = type < 0 ? 2 ** 64 + type : type;
  if (type !== 0) size += 1 + (type < 0 ? 10 : varintSize(typeWire));

  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  const bytesField = (tag: number, b: Uint8Array): void => {
    out[pos++] = tag;
    pos = writeVarint(out, pos, b.length);
    out.set(b, pos);
    pos += b.length;
  };
  if (o.encryptedData.length) bytesField(0x0a, o.encryptedData);
  if (keyID.length) bytesField(0x12, keyID);
  if (o.encryptedDEKSource.length) bytesField(0x1a, o.encryptedDEKSource);
  for (const e of entries) {
    out[pos++] = 0x22;
    pos = writeVarint(out, pos, e.size);
    bytesField(0x0a, e.key);
    bytesField(0x12, e.value);
  }
  if (type !== 0) {
    out[pos++] = 0x28;
    if (type < 0) pos = writeNegativeVarint(out, pos, type);
    else pos = writeVarint(out, pos, typeWire);
  }
  return out;
}

/**
 * The bytes in front of `encryptedData` in an encoded EncryptedObject (`header ‖ tag 1 ‖ varint
 * length`), for writers that seal straight behind it: field 1 comes first on the wire, so
 * `encryptedDataHeader(h, n) ‖ encryptedData ‖ encodeEncryptedObject({...o, encryptedData: empty})`
 * is exactly `h ‖ encodeEncryptedObject(o)` when `encryptedData` is not empty.
 */
export function encryptedDataHeader(header: Uint8Array, encryptedDataLength: number): Buffer {
  const out = Buffer.allocUnsafe(header.length + 1 + varintSize(encryptedDataLength));
  out.set(header, 0);
  out[header.length] = 0x0a;
  writeVarint(out, header.length + 1, encryptedDataLength);
  return out;
}

function writeNegativeVarint(out: Buffer, pos: number, n: number): number {
  let v = BigInt.asUintN(64, BigInt(n));
  for (let i = 0; i < 9; i++) {
    out[pos++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  out[pos++] = Number(v);
  return pos;
}

/** A cursor over protobuf wire data; every malformed input is an EnvelopeError, never a crash. */
class Reader {
  pos: number;
  constructor(readonly buf: Uint8Array, start: number, readonly end: number) {
    this.pos = start;
  }

  /** Reads a varint; returns its low 32 bits (`lo`, unsigned) and its value as a float (`value`). */
  varint(): { lo: number; value: number } {
    let value = 0;
    let lo = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new EnvelopeError(ERR_WIRE);
      const b = this.buf[this.pos++] as number;
      if (i < 5) lo = (lo | ((b & 0x7f) << (7 * i))) >>> 0;
      value += (b & 0x7f) * 2 ** (7 * i);
      if (b < 0x80) {
        if (i === 9 && b > 1) throw new EnvelopeError(ERR_WIRE);
        return { lo, value };
      }
    }
    throw new EnvelopeError(ERR_WIRE);
  }

  lengthDelimited(): Uint8Array {
    const { value: len } = this.varint();
    if (len > this.end - this.pos) throw new EnvelopeError(ERR_WIRE);
    const start = this.pos;
    this.pos += len;
    return this.buf.subarray(start, this.pos);
  }

  skip(wireType: number, fieldNo: number, depth = 0): void {
    switch (wireType) {
      case 0: this.varint(); return;
      case 1: this.advance(8); return;
      case 2: this.lengthDelimited(); return;
      case 5: this.advance(4); return;
      case 3: {
        if (depth > 100) throw new EnvelopeError(ERR_WIRE);
        for (;;) {
          const { fieldNo: f, wireType: w } = this.tag();
          if (w === 4) {
            if (f !== fieldNo) throw new EnvelopeError(ERR_WIRE);
            return;
          }
          this.skip(w, f, depth + 1);
        }
      }
      default: throw new EnvelopeError(ERR_WIRE);
    }
  }

  tag(): { fieldNo: number; wireType: number } {
    const { value } = this.varint();
    const fieldNo = Math.floor(value / 8);
    if (fieldNo < 1 || fieldNo > 0x1fffffff) throw new EnvelopeError(ERR_WIRE);
    return { fieldNo, wireType: value % 8 };
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw new EnvelopeError(ERR_WIRE);
    this.pos += n;
  }
}

function decodeString(bytes: Uint8Array, field: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new EnvelopeError(`proto: field ${field} contains invalid UTF-8`);
  }
}

/**
 * Parses an EncryptedObject (no validation: see `validateEncryptedObject`). Byte fields are views
 * into `data`; callers that keep them past the stored value's lifetime copy them.
 */
export function decodeEncryptedObject(data: Uint8Array): EncryptedObject {
  const o: EncryptedObject = {
    encryptedData: EMPTY,
    keyID: '',
    encryptedDEKSource: EMPTY,
    annotations: {},
    encryptedDEKSourceType: 0,
  };
  const r = new Reader(data, 0, data.length);
  while (r.pos < r.end) {
    const { fieldNo, wireType } = r.tag();
    if (wireType === 4) throw new EnvelopeError(ERR_WIRE);
    // A known field with another wire type is an unknown field to protobuf-go.
    if (fieldNo === 1 && wireType === 2) o.encryptedData = r.lengthDelimited();
    else if (fieldNo === 2 && wireType === 2) o.keyID = decodeString(r.lengthDelimited(), 'v2.EncryptedObject.keyID');
    else if (fieldNo === 3 && wireType === 2) o.encryptedDEKSource = r.lengthDelimited();
    else if (fieldNo === 4 && wireType === 2) readAnnotation(r.lengthDelimited(), o.annotations);
    else if (fieldNo === 5 && wireType === 0) o.encryptedDEKSourceType = r.varint().lo | 0;
    else r.skip(wireType, fieldNo);
  }
  return o;
}

function readAnnotation(entry: Uint8Array, into: Record<string, Uint8Array>): void {
  const r = new Reader(entry, 0, entry.length);
  let key = '';
  let value: Uint8Array = EMPTY;
  while (r.pos < r.end) {
    const { fieldNo, wireType } = r.tag();
    if (wireType === 4) throw new EnvelopeError(ERR_WIRE);
    if (fieldNo === 1 && wireType === 2) key = decodeString(r.lengthDelimited(), 'v2.EncryptedObject.AnnotationsEntry.key');
    else if (fieldNo === 2 && wireType === 2) value = r.lengthDelimited();
    else r.skip(wireType, fieldNo);
  }
  // Own property even for `__proto__`: a plain assignment would hit the prototype setter.
  Object.defineProperty(into, key, { value, enumerable: true, writable: true, configurable: true });
}

const EMPTY = new Uint8Array(0);
