// The local backend's ciphertext (what kube-apiserver stores as the wrapped DEK/seed):
//
//   0x01 ‖ u32be(version) ‖ id (8 bytes) ‖ nonce (12 bytes) ‖ AES-256-GCM ciphertext ‖ tag (16 bytes)
//
// AAD = the first 13 bytes (format ‖ version ‖ id) ‖ UTF-8 key_id (`local:v<version>:<id hex>`), so a
// ciphertext only opens under the KEK version it names: editing the version or id fails the tag.
// 41 bytes of overhead: a 32-byte DEK wraps to 73 bytes, far under the KMS v2 limit of 1024.
import { GCM_NONCE_SIZE, GCM_TAG_SIZE, type AesGcm } from '../../crypto/aes-gcm.js';
import { BackendError } from '../backend.js';
import { openWith, sealWith, type SealPrefix } from '../seal-prefix.js';

export const CIPHERTEXT_FORMAT = 0x01;
const HEADER_BYTES = 1 + 4 + 8;
export const CIPHERTEXT_OVERHEAD = HEADER_BYTES + GCM_NONCE_SIZE + GCM_TAG_SIZE;

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
export function sealPrefix(ref: VersionRef, keyId: string): SealPrefix {
  const head = header(ref);
  return { head, aad: aad(head, keyId) };
}

// One Encrypt per call on the plugin's hot path: AesGcm draws its nonces from a CSPRNG pool
// (src/crypto/nonce.ts) instead of one randomBytes(12) per call, which cost about as much as the
// AES-GCM itself.
export function seal(prefix: SealPrefix, gcm: AesGcm, plaintext: Uint8Array): Buffer {
  return sealWith(gcm, prefix, plaintext);
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
export function open(prefix: SealPrefix, keyId: string, gcm: AesGcm, ciphertext: Uint8Array): Buffer {
  return openWith(gcm, prefix.aad, ciphertext.subarray(HEADER_BYTES), () => `ciphertext does not authenticate under key ${keyId}`);
}
