// Errors of the cipher primitives. Their messages are kube-apiserver's exact texts (format.md §1.2–1.4,
// §1.6) so a stored value that fails here fails with the same words as in Go; they never carry key
// bytes, nonces or plaintext.
import { AtrestError } from '../errors.js';

export const ERR_SHORT_DATA = 'the stored data was shorter than the required size';
export const ERR_BLOCK_SIZE = 'the stored data is not a multiple of the block size';
export const ERR_PKCS7_DATA = 'invalid PKCS7 data (empty or not padded)';
export const ERR_PKCS7_PADDING = 'invalid padding on input';
/** Go's `cipher: message authentication failed`: every GCM open failure reads the same. */
export const ERR_GCM_AUTH = 'cipher: message authentication failed';
/** golang.org/x/crypto secretbox open failure as kube-apiserver reports it (sic). */
export const ERR_SECRETBOX_OPEN = 'output array was not large enough for encryption';

export type CryptoErrorCode = 'DECRYPT_FAILED' | 'ENCRYPT_FAILED' | 'INVALID_KEY';

export class CryptoError extends AtrestError {
  declare readonly code: CryptoErrorCode;

  constructor(code: CryptoErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Go's `crypto/aes: invalid key size <n>` for a key that is not 16, 24 or 32 bytes. */
export function invalidAesKeySize(size: number): CryptoError {
  return new CryptoError('INVALID_KEY', `crypto/aes: invalid key size ${size}`);
}
