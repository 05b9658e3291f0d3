// What the plugin's own AES-256-GCM ciphertexts share (the local backend's, local/ciphertext.ts, and
// the key hierarchy's envelopes, hierarchy/envelope.ts): a header written before the nonce and the
// AAD that every seal under one key authenticates, both computed once per key. The seal and open
// themselves are src/crypto/aes-gcm.ts: `head ‖ nonce(12) ‖ ciphertext ‖ tag(16)`, a random 96-bit
// nonce per seal from a CSPRNG pool.
import type { AesGcm } from '../crypto/aes-gcm.js';
import { BackendError } from './backend.js';

/** What every ciphertext of one key (and carrier) starts with and authenticates. */
export interface SealPrefix {
  /** Bytes written before the nonce. */
  head: Buffer;
  aad: Buffer;
}

/** `prefix.head ‖ nonce ‖ ciphertext ‖ tag`, authenticating `prefix.aad`. */
export function sealWith(gcm: AesGcm, prefix: SealPrefix, plaintext: Uint8Array): Buffer {
  return gcm.seal(plaintext, prefix.aad, prefix.head);
}

/** Opens `nonce ‖ ciphertext ‖ tag` bound to `aad`; INVALID_CIPHERTEXT saying `refusal()` when it does not authenticate. */
export function openWith(gcm: AesGcm, aad: Uint8Array, sealed: Uint8Array, refusal: () => string): Buffer {
  try {
    return gcm.open(sealed, aad);
  } catch (err) {
    throw new BackendError('INVALID_CIPHERTEXT', refusal(), { cause: err });
  }
}
