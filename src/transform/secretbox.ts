// The secretbox provider for one key (format.md §1.4): `nonce(24) ‖ tag(16) ‖ XSalsa20 ciphertext`,
// a 32-byte key, no authenticated data. The builder puts it behind `k8s:enc:secretbox:v1:<keyName>:`.
import { Secretbox } from '../crypto/secretbox.js';
import type { NonceSource } from '../crypto/nonce.js';
import type { HeaderWriter } from './prefix.js';
import type { ReadOrigin, TransformResult, Transformer } from './types.js';

export const SECRETBOX_PREFIX = 'k8s:enc:secretbox:v1:';

export class SecretboxTransformer implements Transformer, HeaderWriter {
  private readonly cipher: Secretbox;
  private readonly origin: ReadOrigin;

  /** `key`: exactly 32 bytes. `nonceSource`: tests only. */
  constructor(key: Uint8Array, keyName: string, options: { nonceSource?: NonceSource } = {}) {
    this.cipher = new Secretbox(key, options);
    this.origin = Object.freeze({ provider: 'secretbox', name: keyName });
  }

  async toStorage(plaintext: Uint8Array, _dataCtx: Uint8Array): Promise<Buffer> {
    return this.cipher.seal(plaintext);
  }

  async toStorageWithHeader(header: Uint8Array, plaintext: Uint8Array, _dataCtx: Uint8Array): Promise<Buffer> {
    return this.cipher.seal(plaintext, header);
  }

  async fromStorage(stored: Uint8Array, _dataCtx: Uint8Array): Promise<TransformResult> {
    return { plaintext: this.cipher.open(stored), stale: false, origin: this.origin };
  }
}
