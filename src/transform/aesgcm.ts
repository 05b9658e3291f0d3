// The aesgcm provider for one key (format.md §1.3): `nonce(12) ‖ ciphertext ‖ tag(16)` with the
// storage key as authenticated data, so a value copied to another key does not decrypt. The builder
// puts it behind `k8s:enc:aesgcm:v1:<keyName>:`.
import { AesGcm } from '../crypto/aes-gcm.js';
import type { NonceSource } from '../crypto/nonce.js';
import type { HeaderWriter } from './prefix.js';
import type { ReadOrigin, TransformResult, Transformer } from './types.js';

export const AESGCM_PREFIX = 'k8s:enc:aesgcm:v1:';

export class AesGcmTransformer implements Transformer, HeaderWriter {
  private readonly cipher: AesGcm;
  private readonly origin: ReadOrigin;

  /** `key`: 16, 24 or 32 bytes. `nonceSource`: tests only. */
  constructor(key: Uint8Array, keyName: string, options: { nonceSource?: NonceSource } = {}) {
    this.cipher = new AesGcm(key, options);
    this.origin = Object.freeze({ provider: 'aesgcm', name: keyName });
  }

  async toStorage(plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer> {
    return this.cipher.seal(plaintext, dataCtx);
  }

  async toStorageWithHeader(header: Uint8Array, plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer> {
    return this.cipher.seal(plaintext, dataCtx, header);
  }

  async fromStorage(stored: Uint8Array, dataCtx: Uint8Array): Promise<TransformResult> {
    return { plaintext: this.cipher.open(stored, dataCtx), stale: false, origin: this.origin };
  }
}
