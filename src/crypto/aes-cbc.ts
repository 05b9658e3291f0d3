// AES-CBC with PKCS#7 padding, kube-apiserver's aescbc layout (format.md §1.2): `IV(16) ‖ CBC(key, IV,
// PKCS7(plaintext))`, no MAC, no authenticated data. Reading follows Go's checks in Go's order and
// with Go's texts, including its leniency (a pad byte > 16 is accepted when the bytes match) and
// returning an error where Go would panic (a value holding only the IV).
import { createCipheriv, createDecipheriv, type KeyObject } from 'node:crypto';
import { aesKeyObject } from './aes-key.js';
import { CryptoError, ERR_BLOCK_SIZE, ERR_PKCS7_DATA, ERR_PKCS7_PADDING, ERR_SHORT_DATA } from './errors.js';
import { createPooledNonceSource, type NonceSource } from './nonce.js';

export const AES_BLOCK_SIZE = 16;
export const CBC_IV_SIZE = 16;

export class AesCbc {
  private readonly key: KeyObject;
  private readonly algorithm: string;
  private readonly nonceSource: NonceSource;

  /** `key`: 16, 24 or 32 bytes. `nonceSource` is for tests only (fixed-IV vectors). */
  constructor(key: Uint8Array, options: { nonceSource?: NonceSource } = {}) {
    const { key: keyObject, bits } = aesKeyObject(key);
    this.key = keyObject;
    this.algorithm = `aes-${bits}-cbc`;
    this.nonceSource = options.nonceSource ?? createPooledNonceSource();
  }

  /** Returns `header ‖ IV ‖ ciphertext` in one buffer (the header is the caller's prefix, if any). */
  seal(plaintext: Uint8Array, header?: Uint8Array): Buffer {
    const h = header?.length ?? 0;
    // PKCS#7 always adds 1..16 bytes: a whole block when the plaintext is already aligned.
    const paddedLength = plaintext.length - (plaintext.length % AES_BLOCK_SIZE) + AES_BLOCK_SIZE;
    const out = Buffer.allocUnsafe(h + CBC_IV_SIZE + paddedLength);
    if (header) out.set(header, 0);
    const iv = out.subarray(h, h + CBC_IV_SIZE);
    this.nonceSource(iv);
    const cipher = createCipheriv(this.algorithm, this.key, iv);
    const body = cipher.update(plaintext);
    const tail = cipher.final();
    if (body.length + tail.length !== paddedLength) {
      throw new CryptoError('ENCRYPT_FAILED', 'aes-cbc produced an unexpected ciphertext length');
    }
    out.set(body, h + CBC_IV_SIZE);
    out.set(tail, h + CBC_IV_SIZE + body.length);
    return out;
  }

  /** Reads `IV ‖ ciphertext`; the result is a view of a fresh buffer (never of `data`). */
  open(data: Uint8Array): Buffer {
    if (data.length < CBC_IV_SIZE) throw new CryptoError('DECRYPT_FAILED', ERR_SHORT_DATA);
    const ciphertextLength = data.length - CBC_IV_SIZE;
    if (ciphertextLength % AES_BLOCK_SIZE !== 0) throw new CryptoError('DECRYPT_FAILED', ERR_BLOCK_SIZE);
    // Go indexes result[-1] here and panics; there is nothing to unpad, so it is the "empty" error.
    if (ciphertextLength === 0) throw new CryptoError('DECRYPT_FAILED', ERR_PKCS7_DATA);

    const decipher = createDecipheriv(this.algorithm, this.key, data.subarray(0, CBC_IV_SIZE));
    // Padding is checked below with Go's rules; OpenSSL's own check is stricter (rejects pad > 16).
    decipher.setAutoPadding(false);
    const body = decipher.update(data.subarray(CBC_IV_SIZE));
    const tail = decipher.final();
    const result = tail.length === 0 ? body : Buffer.concat([body, tail]);

    const pad = result[result.length - 1] ?? 0;
    if (pad === 0 || pad > result.length) throw new CryptoError('DECRYPT_FAILED', ERR_PKCS7_DATA);
    const size = result.length - pad;
    for (let i = size; i < result.length; i++) {
      if (result[i] !== pad) throw new CryptoError('DECRYPT_FAILED', ERR_PKCS7_PADDING);
    }
    return result.subarray(0, size);
  }
}
