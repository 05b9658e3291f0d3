// The kms v2 decrypt-cache key (format.md §4, kube-apiserver `generateCacheKey`): SHA-256 over
// `u32be(type) ‖ u16be(len)‖encryptedDEKSource ‖ u16be(len)‖keyID ‖ [u32be(count) ‖ for each
// annotation key in byte order: u16be(len)‖key ‖ u16be(len)‖value]`. Only the digest is kept (as a
// 32-char latin1 string), so the cache holds no DEK source bytes.
import { createHash } from 'node:crypto';
import { EnvelopeError } from '../../kms/errors.js';

export function dekSourceCacheKey(
  type: number,
  encryptedDEKSource: Uint8Array,
  keyID: string,
  annotations: Record<string, Uint8Array>,
): string {
  const keys = Object.keys(annotations);
  const encodedKeys = keys.length > 0 ? keys.map((k) => Buffer.from(k, 'utf8')).sort(Buffer.compare) : [];
  const keyIdLength = Buffer.byteLength(keyID, 'utf8');
  let size = 4 + 2 + encryptedDEKSource.length + 2 + keyIdLength;
  if (encodedKeys.length > 0) {
    size += 4;
    for (const k of encodedKeys) size += 2 + k.length + 2 + (annotations[k.toString('utf8')] as Uint8Array).length;
  }
  // One buffer, one hash call: this runs on every kms v2 read.
  const b = Buffer.allocUnsafe(size);
  let pos = b.writeUInt32BE(type >>> 0, 0);
  pos = putU16(b, pos, encryptedDEKSource.length);
  b.set(encryptedDEKSource, pos);
  pos += encryptedDEKSource.length;
  pos = putU16(b, pos, keyIdLength);
  pos += b.write(keyID, pos, 'utf8');
  if (encodedKeys.length > 0) {
    pos = b.writeUInt32BE(encodedKeys.length, pos);
    for (const k of encodedKeys) {
      const v = annotations[k.toString('utf8')] as Uint8Array;
      pos = putU16(b, pos, k.length);
      b.set(k, pos);
      pos += k.length;
      pos = putU16(b, pos, v.length);
      b.set(v, pos);
      pos += v.length;
    }
  }
  return createHash('sha256').update(b).digest().toString('latin1');
}

function putU16(b: Buffer, pos: number, n: number): number {
  if (n > 0xffff) throw new EnvelopeError('failed to generate cache key: length overflow');
  return b.writeUInt16BE(n, pos);
}
