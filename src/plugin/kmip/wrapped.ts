// The ciphertext the kmip backend hands to the API server: which KMIP object wrapped the DEK, how
// (AES-GCM or AES-CBC), and what the KMIP server returned. Layout (all lengths one byte):
//
//   0x01 | mode (0x01 GCM, 0x02 CBC) | uidLen | uid (UTF-8) | ivLen | iv | [GCM: tagLen | tag] | data
//
// For GCM the header up to and including the uid is the authenticated additional data (with a
// context label), so a ciphertext cannot be moved to another object or mode without failing.
import type { CipherMode } from './messages.js';

export const WRAPPED_FORMAT_VERSION = 0x01;
export const MAX_WRAPPED_BYTES = 1024;
const MODE_BYTE: Record<CipherMode, number> = { gcm: 0x01, cbc: 0x02 };
const AAD_LABEL = Buffer.from('atrest kmip wrapped DEK v1\0', 'latin1');

export interface WrappedKey {
  mode: CipherMode;
  /** KMIP Unique Identifier of the key that wrapped it. */
  uid: string;
  iv: Buffer;
  /** GCM only. */
  tag?: Buffer;
  data: Buffer;
}

/** The header bytes a ciphertext for (mode, uid) starts with; throws on a uid of 0 or > 255 bytes. */
export function wrappedHeader(mode: CipherMode, uid: string): Buffer {
  const u = Buffer.from(uid, 'utf8');
  if (u.length < 1 || u.length > 255) throw new RangeError(`KMIP unique identifier of ${u.length} bytes does not fit the ciphertext header`);
  return Buffer.concat([Buffer.from([WRAPPED_FORMAT_VERSION, MODE_BYTE[mode], u.length]), u]);
}

/** The GCM additional data for a header. */
export function wrappedAad(header: Buffer): Buffer {
  return Buffer.concat([AAD_LABEL, header]);
}

export function encodeWrapped(header: Buffer, w: Pick<WrappedKey, 'iv' | 'tag' | 'data'>): Buffer {
  if (w.iv.length < 1 || w.iv.length > 255) throw new RangeError(`IV of ${w.iv.length} bytes`);
  const parts = [header, Buffer.from([w.iv.length]), w.iv];
  if (w.tag !== undefined) {
    if (w.tag.length < 1 || w.tag.length > 255) throw new RangeError(`tag of ${w.tag.length} bytes`);
    parts.push(Buffer.from([w.tag.length]), w.tag);
  }
  parts.push(w.data);
  return Buffer.concat(parts);
}

/** Parses a ciphertext; returns a reason string when it is not one of ours. */
export function parseWrapped(ct: Uint8Array): { wrapped: WrappedKey; header: Buffer } | { error: string } {
  const b = Buffer.from(ct.buffer, ct.byteOffset, ct.byteLength);
  if (b.length > MAX_WRAPPED_BYTES) return { error: `ciphertext of ${b.length} bytes exceeds ${MAX_WRAPPED_BYTES}` };
  if (b.length < 3) return { error: 'ciphertext too short' };
  if (b[0] !== WRAPPED_FORMAT_VERSION) return { error: `unknown ciphertext format version ${b[0]}` };
  const mode: CipherMode | undefined = b[1] === MODE_BYTE.gcm ? 'gcm' : b[1] === MODE_BYTE.cbc ? 'cbc' : undefined;
  if (mode === undefined) return { error: `unknown wrapping mode ${b[1]}` };
  let p = 2;
  const take = (n: number): Buffer | undefined => {
    if (p + n > b.length) return undefined;
    const s = b.subarray(p, p + n);
    p += n;
    return s;
  };
  const uidLen = b[p++]!;
  const uidBytes = uidLen === 0 ? undefined : take(uidLen);
  if (uidBytes === undefined) return { error: 'truncated key identifier' };
  let uid: string;
  try {
    uid = new TextDecoder('utf-8', { fatal: true }).decode(uidBytes);
  } catch {
    return { error: 'key identifier is not UTF-8' };
  }
  const header = Buffer.from(b.subarray(0, p));
  const ivLen = take(1)?.[0];
  const iv = ivLen ? take(ivLen) : undefined;
  if (iv === undefined) return { error: 'missing or truncated IV' };
  let tag: Buffer | undefined;
  if (mode === 'gcm') {
    const tagLen = take(1)?.[0];
    tag = tagLen !== undefined && tagLen >= 12 && tagLen <= 16 ? take(tagLen) : undefined;
    if (tag === undefined) return { error: 'missing or truncated GCM tag' };
  }
  const data = b.subarray(p);
  if (data.length === 0) return { error: 'no wrapped data' };
  if (mode === 'cbc' && data.length % 16 !== 0) return { error: 'CBC data is not a whole number of blocks' };
  return { wrapped: { mode, uid, iv: Buffer.from(iv), ...(tag ? { tag: Buffer.from(tag) } : {}), data: Buffer.from(data) }, header };
}
