// The identity provider (format.md §1.1): writes the plaintext as it is, with no prefix; reads any
// value except one starting with the reserved `k8s:enc:` (so encrypted data is never returned as
// if it were plaintext).
import type { ReadOrigin, TransformResult, Transformer } from './types.js';
import { TransformError, storageKeyText } from './errors.js';
import { ENCRYPTED_PREFIX } from './prefix.js';

export const ERR_IDENTITY_ENCRYPTED = 'identity transformer tried to read encrypted data';
const RESERVED = Buffer.from(ENCRYPTED_PREFIX);
const ORIGIN: ReadOrigin = Object.freeze({ provider: 'identity' });

export class IdentityTransformer implements Transformer {
  private readonly nameStorageKey: boolean;

  /** `nameStorageKey`: name the storage key in the error (when identity is a resource's whole transformer). */
  constructor(options: { nameStorageKey?: boolean } = {}) {
    this.nameStorageKey = options.nameStorageKey ?? false;
  }

  async toStorage(plaintext: Uint8Array, _dataCtx: Uint8Array): Promise<Buffer> {
    return asBuffer(plaintext);
  }

  async fromStorage(stored: Uint8Array, dataCtx: Uint8Array): Promise<TransformResult> {
    if (stored.length >= RESERVED.length && RESERVED.equals(stored.subarray(0, RESERVED.length))) {
      throw new TransformError('UNEXPECTED_ENCRYPTED_DATA', ERR_IDENTITY_ENCRYPTED, {
        storageKey: this.nameStorageKey ? storageKeyText(dataCtx) : undefined,
      });
    }
    return { plaintext: asBuffer(stored), stale: false, origin: ORIGIN };
  }
}

/** A Buffer view of the same bytes (no copy). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
