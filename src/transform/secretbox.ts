// The secretbox provider for one key (format.md §1.4): `nonce(24) ‖ tag(16) ‖ XSalsa20 ciphertext`,
// a 32-byte key, no authenticated data. The builder puts it behind `k8s:enc:secretbox:v1:<keyName>:`.
import { Secretbox } from '../crypto/secretbox.js';
import type { NonceSource } from '../crypto/nonce.js';
import { NoAadCipherTransformer } from './no-aad-cipher.js';

export const SECRETBOX_PREFIX = 'k8s:enc:secretbox:v1:';

export class SecretboxTransformer extends NoAadCipherTransformer {
  /** `key`: exactly 32 bytes. `nonceSource`: tests only. */
  constructor(key: Uint8Array, keyName: string, options: { nonceSource?: NonceSource } = {}) {
    super(new Secretbox(key, options), 'secretbox', keyName);
  }
}
