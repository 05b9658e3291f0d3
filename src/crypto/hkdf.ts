// HKDF-SHA256, expand step only (RFC 5869 §2.3), for L = 32: what kube-apiserver's kms v2 type 1
// (`HKDF_SHA256_XNONCE_AES_GCM_SEED`) derives from the seed (format.md §1.6). There is no extract
// step and no salt: the seed is used directly as the PRK. With one output block the expansion is
// `T(1) = HMAC-SHA256(PRK, info ‖ 0x01)`.
import { createHmac, type KeyObject } from 'node:crypto';

export const HKDF_SHA256_OUTPUT_SIZE = 32;
const BLOCK_COUNTER_1 = Uint8Array.of(1);

/** The 32-byte key `HKDF-Expand(SHA-256, prk, info, 32)`. Pass a KeyObject to avoid re-importing the PRK. */
export function hkdfSha256Expand32(prk: Uint8Array | KeyObject, info: Uint8Array): Buffer {
  return createHmac('sha256', prk).update(info).update(BLOCK_COUNTER_1).digest();
}
