// The pkcs11 backend's ciphertext layout (what v2 EncryptResponse.ciphertext and v1beta1 cipher
// carry). It records which key object (CKA_ID) and which mechanism wrapped the plaintext, so a
// Decrypt finds the right KEK version after rotations:
//
//   u8 format (1) ‖ u8 mechanism ‖ u8 idLength ‖ CKA_ID ‖ body
//   mechanism 1, AES-256-GCM:  body = iv(12) ‖ ciphertext ‖ tag(16); AAD = the header before body
//   mechanism 2, AES-KWP (RFC 5649 via C_WrapKey): body = wrap(inner), where
//     inner = CKA_ID ‖ u16be(plaintext length) ‖ plaintext ‖ zero padding to a multiple of 8
//   (key wrap has no AAD, so the header's CKA_ID is repeated inside the wrapped value; the explicit
//   length and padding make the result independent of whether a token strips KWP padding, which
//   SoftHSM does not do for generic secrets).
import { BackendError } from '../backend.js';

export const CIPHERTEXT_FORMAT = 1;
export const MECH_AES_GCM = 1;
export const MECH_AES_KWP = 2;
export type WrapMechanism = typeof MECH_AES_GCM | typeof MECH_AES_KWP;

export const GCM_IV_BYTES = 12;
export const GCM_TAG_BYTES = 16;
/** KMS v2 limit for EncryptResponse.ciphertext. */
export const MAX_CIPHERTEXT_BYTES = 1024;

export interface ParsedCiphertext {
  mechanism: WrapMechanism;
  /** CKA_ID of the key object (a view into the ciphertext). */
  keyVersionId: Buffer;
  /** The bytes before the body (GCM AAD). */
  header: Buffer;
  body: Buffer;
}

export function encodeHeader(mechanism: WrapMechanism, keyVersionId: Uint8Array): Buffer {
  if (keyVersionId.length < 1 || keyVersionId.length > 255) {
    throw new BackendError('INTERNAL', `CKA_ID of ${keyVersionId.length} bytes does not fit the ciphertext header`);
  }
  const header = Buffer.allocUnsafe(3 + keyVersionId.length);
  header[0] = CIPHERTEXT_FORMAT;
  header[1] = mechanism;
  header[2] = keyVersionId.length;
  header.set(keyVersionId, 3);
  return header;
}

function invalid(reason: string): BackendError {
  return new BackendError('INVALID_CIPHERTEXT', `pkcs11 ciphertext is malformed: ${reason}`);
}

/** Splits a ciphertext into header fields and body; throws INVALID_CIPHERTEXT when malformed. */
export function parseCiphertext(ciphertext: Uint8Array): ParsedCiphertext {
  const buf = Buffer.from(ciphertext.buffer, ciphertext.byteOffset, ciphertext.byteLength);
  if (buf.length < 3) throw invalid(`${buf.length} bytes is shorter than the header`);
  if (buf.length > MAX_CIPHERTEXT_BYTES) throw invalid(`${buf.length} bytes exceeds ${MAX_CIPHERTEXT_BYTES}`);
  if (buf[0] !== CIPHERTEXT_FORMAT) throw invalid(`unknown format byte ${buf[0]}`);
  const mechanism = buf[1];
  if (mechanism !== MECH_AES_GCM && mechanism !== MECH_AES_KWP) throw invalid(`unknown mechanism byte ${mechanism}`);
  const idLength = buf[2] ?? 0;
  if (idLength === 0) throw invalid('empty key id');
  const headerLength = 3 + idLength;
  const body = buf.subarray(headerLength);
  const minBody = mechanism === MECH_AES_GCM ? GCM_IV_BYTES + GCM_TAG_BYTES : 24;
  if (buf.length < headerLength || body.length < minBody) throw invalid(`${buf.length} bytes is too short`);
  if (mechanism === MECH_AES_KWP && body.length % 8 !== 0) throw invalid('key-wrap body is not a multiple of 8 bytes');
  return { mechanism, keyVersionId: buf.subarray(3, headerLength), header: buf.subarray(0, headerLength), body };
}

/** Largest plaintext that still gives a ciphertext within MAX_CIPHERTEXT_BYTES. */
export function maxPlaintextBytes(mechanism: WrapMechanism, keyVersionIdLength: number): number {
  const header = 3 + keyVersionIdLength;
  if (mechanism === MECH_AES_GCM) return MAX_CIPHERTEXT_BYTES - header - GCM_IV_BYTES - GCM_TAG_BYTES;
  // wrapped = inner + 8 (RFC 3394/5649 integrity block); inner = id + 2 + plaintext, padded to 8.
  const innerMax = Math.floor((MAX_CIPHERTEXT_BYTES - header - 8) / 8) * 8;
  return innerMax - keyVersionIdLength - 2;
}

/** The value wrapped with AES-KWP (see the layout above). */
export function encodeKwpInner(keyVersionId: Uint8Array, plaintext: Uint8Array): Buffer {
  const used = keyVersionId.length + 2 + plaintext.length;
  const inner = Buffer.alloc(Math.max(16, Math.ceil(used / 8) * 8));
  inner.set(keyVersionId, 0);
  inner.writeUInt16BE(plaintext.length, keyVersionId.length);
  inner.set(plaintext, keyVersionId.length + 2);
  return inner;
}

/** Checks the unwrapped inner value against the header's key id and returns the plaintext. */
export function decodeKwpInner(inner: Buffer, keyVersionId: Buffer): Buffer {
  const idLength = keyVersionId.length;
  if (inner.length < idLength + 2 || !inner.subarray(0, idLength).equals(keyVersionId)) {
    throw new BackendError('INVALID_CIPHERTEXT', 'pkcs11 ciphertext does not authenticate: key id mismatch');
  }
  const length = inner.readUInt16BE(idLength);
  const end = idLength + 2 + length;
  if (end > inner.length || inner.subarray(end).some((b) => b !== 0)) {
    throw new BackendError('INVALID_CIPHERTEXT', 'pkcs11 ciphertext does not authenticate: bad length or padding');
  }
  return Buffer.from(inner.subarray(idLength + 2, end));
}
