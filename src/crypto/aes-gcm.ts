// AES-GCM as kube-apiserver's aesgcm provider and the kms envelopes use it (format.md §1.3):
// `nonce(12) ‖ ciphertext ‖ tag(16)`, the storage key as authenticated data, a fresh random nonce
// per write. Every open failure reads `cipher: message authentication failed`, like Go's.
import { createCipheriv, createDecipheriv, KeyObject, type CipherGCMTypes } from 'node:crypto';
import { aesBits, aesKeyObject } from './aes-key.js';
import { CryptoError, ERR_GCM_AUTH, ERR_SHORT_DATA } from './errors.js';
import { createPooledNonceSource, type NonceSource } from './nonce.js';

export const GCM_NONCE_SIZE = 12;
export const GCM_TAG_SIZE = 16;

/** One string per key size, shared by every instance (kms v2 keeps one instance per cached derived key). */
const ALGORITHMS = { 128: 'aes-128-gcm', 192: 'aes-192-gcm', 256: 'aes-256-gcm' } as const;

export class AesGcm {
  /** Bytes `seal` adds to the plaintext: nonce and tag. */
  readonly overhead = GCM_NONCE_SIZE + GCM_TAG_SIZE;
  private readonly key: KeyObject | Buffer;
  private readonly algorithm: CipherGCMTypes;
  private readonly nonceSource: NonceSource;

  /**
   * `key`: 16, 24 or 32 bytes, or a secret KeyObject of that size (used as it is, for a caller that
   * also needs the KeyObject). `nonceSource` is for tests only (fixed-nonce vectors).
   * `ownKeyBuffer`: keep `key` itself (the caller hands it over and never reuses it) instead of
   * importing it into a KeyObject — for short-lived derived keys, where the import costs as much as
   * the encryption (kms v2 derives one per write).
   */
  constructor(key: Uint8Array | KeyObject, options: { nonceSource?: NonceSource; ownKeyBuffer?: boolean } = {}) {
    if (key instanceof KeyObject) {
      this.key = key;
      this.algorithm = ALGORITHMS[aesBits(key.type === 'secret' ? key.symmetricKeySize ?? 0 : 0)];
    } else if (options.ownKeyBuffer) {
      this.key = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
      this.algorithm = ALGORITHMS[aesBits(key.length)];
    } else {
      const { key: keyObject, bits } = aesKeyObject(key);
      this.key = keyObject;
      this.algorithm = ALGORITHMS[bits];
    }
    this.nonceSource = options.nonceSource ?? createPooledNonceSource();
  }

  /**
   * Returns `header ‖ nonce ‖ ciphertext ‖ tag ‖ trailer` in one buffer, authenticating `aad`
   * (header and trailer are copied as they are: callers frame the sealed bytes without another copy).
   */
  seal(plaintext: Uint8Array, aad: Uint8Array, header?: Uint8Array, trailer?: Uint8Array): Buffer {
    const h = header?.length ?? 0;
    const t = trailer?.length ?? 0;
    const out = Buffer.allocUnsafe(h + GCM_NONCE_SIZE + plaintext.length + GCM_TAG_SIZE + t);
    if (header) out.set(header, 0);
    const nonce = out.subarray(h, h + GCM_NONCE_SIZE);
    this.nonceSource(nonce);
    const cipher = createCipheriv(this.algorithm, this.key, nonce, { authTagLength: GCM_TAG_SIZE });
    cipher.setAAD(aad);
    const body = cipher.update(plaintext);
    const tail = cipher.final(); // empty for GCM, kept for completeness
    let at = h + GCM_NONCE_SIZE;
    out.set(body, at);
    at += body.length;
    if (tail.length > 0) {
      out.set(tail, at);
      at += tail.length;
    }
    if (at !== out.length - GCM_TAG_SIZE - t) throw new CryptoError('ENCRYPT_FAILED', 'aes-gcm produced an unexpected ciphertext length');
    out.set(cipher.getAuthTag(), at);
    if (trailer) out.set(trailer, at + GCM_TAG_SIZE);
    return out;
  }

  /** Reads `nonce ‖ ciphertext ‖ tag` bound to `aad`. */
  open(data: Uint8Array, aad: Uint8Array): Buffer {
    if (data.length < GCM_NONCE_SIZE) throw new CryptoError('DECRYPT_FAILED', ERR_SHORT_DATA);
    // Go's gcm.Open rejects a ciphertext shorter than the tag with its one authentication error.
    if (data.length < GCM_NONCE_SIZE + GCM_TAG_SIZE) throw new CryptoError('DECRYPT_FAILED', ERR_GCM_AUTH);
    const tagAt = data.length - GCM_TAG_SIZE;
    try {
      const decipher = createDecipheriv(this.algorithm, this.key, data.subarray(0, GCM_NONCE_SIZE), { authTagLength: GCM_TAG_SIZE });
      decipher.setAAD(aad);
      decipher.setAuthTag(data.subarray(tagAt));
      const body = decipher.update(data.subarray(GCM_NONCE_SIZE, tagAt));
      const tail = decipher.final(); // throws when the tag does not verify
      return tail.length === 0 ? body : Buffer.concat([body, tail]);
    } catch (err) {
      throw new CryptoError('DECRYPT_FAILED', ERR_GCM_AUTH, { cause: err });
    }
  }
}
