// The one interface every at-rest provider implements (format.md §0). Composition (a provider's
import type { GroupResource, KMSConfiguration } from '../config/types.js';
// key list, the prefix chain of a resource's providers) is a Transformer too.

/** Which provider, key and (kms v2) key_id hash produced a stored value: for `decrypt`, `verify`, metrics. */
export interface ReadOrigin {
  /** `identity`, `aescbc`, `aesgcm`, `secretbox`, `kms` */
  provider: 'identity' | 'aescbc' | 'aesgcm' | 'secretbox' | 'kms';
  /** aescbc, aesgcm, secretbox: the key name; kms: the provider `name`. */
  name?: string;
  /** kms: `v1` or `v2`. */
  kmsApiVersion?: 'v1' | 'v2';
  /** kms v2: `sha256:<hex>` of the key_id (never the key_id itself in logs). */
  keyIdHash?: string;
}

export interface TransformResult {
  plaintext: Buffer;
  /** The value should be rewritten: not written by the current write provider/key (format.md §0). */
  stale: boolean;
  origin: ReadOrigin;
}

export interface Transformer {
  /**
   * Encrypts `plaintext` for storage under the storage key `dataCtx` (the full etcd key, used as
   * authenticated data by aesgcm, kms v1 GCM and kms v2). Returns the complete stored value.
   */
  toStorage(plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer>;
  /** Decrypts a stored value read from `dataCtx`. Throws TransformError on any failure. */
  fromStorage(stored: Uint8Array, dataCtx: Uint8Array): Promise<TransformResult>;
}

/**
 * Builds the inner kms transformer for one `kms` provider entry (index = 0-based position over all
 * kms providers in the file, for health-check names). The builder adds the
 * `k8s:enc:kms:v1:<name>:` / `k8s:enc:kms:v2:<name>:` prefix. Implemented by src/kms (gRPC) and
 * by in-process fakes in tests.
 */
export type KmsTransformerFactory = (config: KMSConfiguration, index: number) => Transformer;

/** Every resource's transformer, built from one EncryptionConfiguration. */
export interface TransformerSet {
  /** The prefix chain for a resource; unlisted resources get identity (format.md §0). */
  forResource(gr: GroupResource): Transformer;
  /** Closes what the set opened (KMS connections are closed by their factory's owner). */
  close(): Promise<void>;
}
