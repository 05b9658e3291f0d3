// The cipher primitives of format.md §1 (pure, no I/O beyond the system CSPRNG): what the at-rest
// providers and the kms envelopes are built from.
export { AesCbc, AES_BLOCK_SIZE, CBC_IV_SIZE } from './aes-cbc.js';
export { AesGcm, GCM_NONCE_SIZE, GCM_TAG_SIZE } from './aes-gcm.js';
export { aesBits, type AesBits } from './aes-key.js';
export { Secretbox, SECRETBOX_KEY_SIZE, SECRETBOX_NONCE_SIZE, SECRETBOX_TAG_SIZE } from './secretbox.js';
export { hkdfSha256Expand32, HKDF_SHA256_OUTPUT_SIZE } from './hkdf.js';
export {
  ExtendedNonceGcm, sealExtendedNonce, openExtendedNonce,
  XNONCE_INFO_SIZE, XNONCE_MIN_SEED_SIZE, XNONCE_DERIVED_KEY_TTL_MS, type ExtendedNonceGcmOptions,
} from './extended-nonce-gcm.js';
export { systemNonceSource, createPooledNonceSource, fixedNonceSourceForTests, type NonceSource } from './nonce.js';
export {
  CryptoError, type CryptoErrorCode,
  ERR_SHORT_DATA, ERR_BLOCK_SIZE, ERR_PKCS7_DATA, ERR_PKCS7_PADDING, ERR_GCM_AUTH, ERR_SECRETBOX_OPEN,
} from './errors.js';
