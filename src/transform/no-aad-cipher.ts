// A provider over one key whose cipher takes no authenticated data (aescbc, secretbox): the storage
// key is ignored, as kube-apiserver ignores it for these providers (format.md §0).
import type { HeaderWriter } from './prefix.js';
import type { ReadOrigin, TransformResult, Transformer } from './types.js';

/** What such a cipher offers: `seal` returns `header ‖ output`, `open` throws on failure. */
export interface NoAadCipher {
  seal(plaintext: Uint8Array, header?: Uint8Array): Buffer;
  open(data: Uint8Array): Buffer;
}

export class NoAadCipherTransformer implements Transformer, HeaderWriter {
  private readonly origin: ReadOrigin;

  constructor(private readonly cipher: NoAadCipher, provider: 'aescbc' | 'secretbox', keyName: string) {
    this.origin = Object.freeze({ provider, name: keyName });
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
