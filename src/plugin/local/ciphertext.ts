// The local backend's ciphertext (what kube-apiserver stores as the wrapped DEK/seed):
//
//   0x01 ‖ u32be(version) ‖ id (8 bytes) ‖ nonce (12 bytes) ‖ AES-256-GCM ciphertext ‖ tag (16 bytes)
//
// AAD = the first 13 bytes (format ‖ version ‖ id) ‖ UTF-8 key_id (`local:v<version>:<id hex>`), so a
// ciphertext only opens under the KEK version it names: editing the version or id fails the tag.
// 41 bytes of overhead: a 32-byte DEK wraps to 73 bytes, far under the KMS v2 limit of 1024.
import { createCipheriv, createDecipheriv, type KeyObject } from 'node:crypto';
import { BackendError } from '../backend.js';
import { createPooledNonceSource } from '../../crypto/nonce.js';

export const CIPHERTEXT_FORMAT = 0x01;
const HEADER_BYTES = 1 + 4 + 8;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const CIPHERTEXT_OVERHEAD = HEADER_BYTES + NONCE_BYTES + TAG_BYTES;

export interface VersionRef {
  version: number;
  /** 16 lowercase hex digits. */
  id: string;
}

export function header(ref: VersionRef): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h[0] = CIPHERTEXT_FORMAT;
  h.writeUInt32BE(ref.version, 1);
  h.write(ref.id, 5, 'hex');
  return h;
}

function aad(head: Buffer, keyId: string): Buffer {
  return Buffer.concat([head, Buffer.from(keyId, 'utf8')]);
}

/** What every ciphertext of one KEK version starts with and authenticates, computed once per version. */
export interface SealPrefix {
  head: Buffer;
  aad: Buffer;
}

export function sealPrefix(ref: VersionRef, keyId: string): SealPrefix {
  const head = header(ref);
  return { head, aad: aad(head, keyId) };
}

// One Encrypt per call on the plugin's hot path: nonces come from a CSPRNG pool (src/crypto/nonce.ts)
// instead of one randomBytes(12) per call, which cost about as much as the AES-GCM itself.
const nonceSource = createPooledNonceSource();

export function seal(prefix: SealPrefix, key: KeyObject, plaintext: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + NONCE_BYTES + plaintext.length + TAG_BYTES);
  prefix.head.copy(out, 0);
  const nonce = out.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES);
  nonceSource(nonce);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(prefix.aad);
  let at = HEADER_BYTES + NONCE_BYTES;
  at += cipher.update(plaintext).copy(out, at);
  at += cipher.final().copy(out, at);
  cipher.getAuthTag().copy(out, at);
  return out;
}

/** The version a ciphertext names, or an INVALID_CIPHERTEXT error when it is not one of ours. */
export function versionRefOf(ciphertext: Uint8Array): VersionRef {
  if (ciphertext.length < CIPHERTEXT_OVERHEAD) {
    throw new BackendError('INVALID_CIPHERTEXT', `ciphertext is ${ciphertext.length} bytes, shorter than the ${CIPHERTEXT_OVERHEAD} of a local-backend ciphertext`);
  }
  if (ciphertext[0] !== CIPHERTEXT_FORMAT) {
    throw new BackendError('INVALID_CIPHERTEXT', `ciphertext format byte is 0x${(ciphertext[0] ?? 0).toString(16).padStart(2, '0')}, not 0x01 of the local backend`);
  }
  const buf = Buffer.from(ciphertext.buffer, ciphertext.byteOffset, ciphertext.byteLength);
  return { version: buf.readUInt32BE(1), id: buf.toString('hex', 5, HEADER_BYTES) };
}

/** `prefix` is the sealPrefix of the version `ciphertext` names (versionRefOf); `keyId` is for the error text. */
export function open(prefix: SealPrefix, keyId: string, key: KeyObject, ciphertext: Uint8Array): Buffer {
  const buf = Buffer.from(ciphertext.buffer, ciphertext.byteOffset, ciphertext.byteLength);
  const nonce = buf.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES);
  const body = buf.subarray(HEADER_BYTES + NONCE_BYTES, buf.length - TAG_BYTES);
  const tag = buf.subarray(buf.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(prefix.aad);
  decipher.setAuthTag(tag);
  try {
    const plain = decipher.update(body);
    const tail = decipher.final(); // verifies the tag; empty for GCM
    return tail.length === 0 ? plain : Buffer.concat([plain, tail]);
  } catch (err) {
    throw new BackendError('INVALID_CIPHERTEXT', `ciphertext does not authenticate under key ${keyId}`, { cause: err });
  }
}
