// The aescbc provider for one key (format.md §1.2): `IV(16) ‖ AES-CBC(PKCS#7(plaintext))`, no
// authenticated data. The builder puts it behind `k8s:enc:aescbc:v1:<keyName>:`.
import { AesCbc } from '../crypto/aes-cbc.js';
import type { NonceSource } from '../crypto/nonce.js';
import { NoAadCipherTransformer } from './no-aad-cipher.js';

export const AESCBC_PREFIX = 'k8s:enc:aescbc:v1:';

export class AesCbcTransformer extends NoAadCipherTransformer {
  /** `key`: 16, 24 or 32 bytes. `nonceSource`: tests only. */
  constructor(key: Uint8Array, keyName: string, options: { nonceSource?: NonceSource } = {}) {
    super(new AesCbc(key, options), 'aescbc', keyName);
  }
}
