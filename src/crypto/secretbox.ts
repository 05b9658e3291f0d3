// NaCl secretbox (XSalsa20-Poly1305) as kube-apiserver's secretbox provider uses it (format.md §1.4):
// `nonce(24) ‖ tag(16) ‖ ciphertext`, a 32-byte key, a fresh random nonce per write, no
// authenticated data. The cipher is @noble/ciphers' xsalsa20poly1305, whose output is exactly
// golang.org/x/crypto/nacl/secretbox's `tag ‖ ciphertext`.
import { xsalsa20poly1305 } from '@noble/ciphers/salsa.js';
import { CryptoError, ERR_SECRETBOX_OPEN, ERR_SHORT_DATA } from './errors.js';
import { createPooledNonceSource, type NonceSource } from './nonce.js';

export const SECRETBOX_KEY_SIZE = 32;
export const SECRETBOX_NONCE_SIZE = 24;
export const SECRETBOX_TAG_SIZE = 16;
/** noble writes the Poly1305 one-time key into 32 bytes of scratch in front of its output. */
const NOBLE_SCRATCH = 32;

export class Secretbox {
  private readonly key: Uint8Array;
  private readonly nonceSource: NonceSource;

  /** `key`: exactly 32 bytes. `nonceSource` is for tests only (fixed-nonce vectors). */
  constructor(key: Uint8Array, options: { nonceSource?: NonceSource } = {}) {
    if (key.length !== SECRETBOX_KEY_SIZE) {
      throw new CryptoError('INVALID_KEY', `expected key size 32 for secretbox provider, got ${key.length}`);
    }
    // Our own copy: noble borrows the key by reference, so a caller reusing its buffer must not matter.
    this.key = Uint8Array.from(key);
    this.nonceSource = options.nonceSource ?? createPooledNonceSource();
  }

  /** Returns `header ‖ nonce ‖ tag ‖ ciphertext` in one buffer. */
  seal(plaintext: Uint8Array, header?: Uint8Array): Buffer {
    const h = header?.length ?? 0;
    const out = Buffer.allocUnsafe(h + SECRETBOX_NONCE_SIZE + SECRETBOX_TAG_SIZE + plaintext.length);
    const nonce = Buffer.allocUnsafe(SECRETBOX_NONCE_SIZE);
    this.nonceSource(nonce);
    // Let noble encrypt straight into `out`: its scratch area sits over bytes [h+8, h+40), i.e. over
    // the tail of the nonce slot (filled in afterwards) and the tag slot, and it returns the
    // `tag ‖ ciphertext` view that starts exactly at h+24. No extra copy of the ciphertext.
    const scratchAt = h + SECRETBOX_NONCE_SIZE + SECRETBOX_TAG_SIZE - NOBLE_SCRATCH;
    const sealed = xsalsa20poly1305(this.key, nonce).encrypt(plaintext, out.subarray(scratchAt));
    if (sealed.byteOffset !== out.byteOffset + h + SECRETBOX_NONCE_SIZE || sealed.length !== out.length - h - SECRETBOX_NONCE_SIZE) {
      throw new CryptoError('ENCRYPT_FAILED', 'secretbox produced an unexpected output layout');
    }
    if (header) out.set(header, 0);
    out.set(nonce, h);
    return out;
  }

  /** Reads `nonce ‖ tag ‖ ciphertext`. */
  open(data: Uint8Array): Buffer {
    if (data.length < SECRETBOX_NONCE_SIZE + SECRETBOX_TAG_SIZE) throw new CryptoError('DECRYPT_FAILED', ERR_SHORT_DATA);
    let plain: Uint8Array;
    try {
      plain = xsalsa20poly1305(this.key, data.subarray(0, SECRETBOX_NONCE_SIZE)).decrypt(data.subarray(SECRETBOX_NONCE_SIZE));
    } catch (err) {
      throw new CryptoError('DECRYPT_FAILED', ERR_SECRETBOX_OPEN, { cause: err });
    }
    return Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
  }
}
