// The aescbc provider for one key (format.md §1.2): `IV(16) ‖ AES-CBC(PKCS#7(plaintext))`, no
// authenticated data. The builder puts it behind `k8s:enc:aescbc:v1:<keyName>:`.
import { AesCbc } from '../crypto/aes-cbc.js';
import type { NonceSource } from '../crypto/nonce.js';
import type { HeaderWriter } from './prefix.js';
import type { ReadOrigin, TransformResult, Transformer } from './types.js';

export const AESCBC_PREFIX = 'k8s:enc:aescbc:v1:';

export class AesCbcTransformer implements Transformer, HeaderWriter {
  private readonly cipher: AesCbc;
  private readonly origin: ReadOrigin;

  /** `key`: 16, 24 or 32 bytes. `nonceSource`: tests only. */
  constructor(key: Uint8Array, keyName: string, options: { nonceSource?: NonceSource } = {}) {
    this.cipher = new AesCbc(key, options);
    this.origin = Object.freeze({ provider: 'aescbc', name: keyName });
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
