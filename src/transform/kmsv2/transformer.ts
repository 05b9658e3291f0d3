// The kms v2 envelope transformer (format.md §1.6, §4): writes `EncryptedObject{encryptedData =
// seed-derived AES-GCM of the plaintext, keyID, encryptedDEKSource, annotations, type 1}` using the
// current DEK-seed state; reads type 0 and type 1 through a 24-hour decrypt cache keyed by
// SHA-256 of (type, encryptedDEKSource, keyID, annotations), calling the plugin's Decrypt only on a
// miss. Stale when the object's key_id or type differ from the current write state.
// The returned bytes exclude the `k8s:enc:kms:v2:<name>:` prefix (the config builder adds it).
import { randomUUID } from 'node:crypto';
import { messageOf } from '../../errors.js';
import { EnvelopeError, KmsUnavailableError, KmsWriteError } from '../../kms/errors.js';
import { kmsProviderLabel, unreachablePrefix, type KmsProviderRef } from '../../kms/naming.js';
import type { KmsV2Service } from '../../kms/service.js';
import type { TransformResult, Transformer } from '../types.js';
import type { HeaderWriter } from '../prefix.js';
import { AesGcm, ExtendedNonceGcm } from '../../crypto/index.js';
import { dekSourceCacheKey } from './cache-key.js';
import { AES_GCM_KEY, decodeEncryptedObject, encryptedDataHeader, type EncryptedObject } from './encrypted-object.js';
import { ExpiringCache } from './expiring-cache.js';
import type { DataAead, DekSeedState, DekSeedStateHolder } from './state.js';
import { keyIdHash, validateEncryptedObject } from './validation.js';

export const DEK_SOURCE_CACHE_TTL_MS = 24 * 60 * 60 * 1000;

/** What the transformer reports to metrics (src/kms/metrics.ts implements it). */
export interface KmsV2TransformerObserver {
  keyIdUsed?(direction: 'to_storage' | 'from_storage', providerName: string, keyId: string): void;
  cacheMiss?(): void;
  dekSourceCacheSize?(providerName: string, size: number): void;
}

export interface KmsV2TransformerOptions {
  providerName: string;
  /** The plugin's `endpoint`, named in errors. */
  endpoint?: string;
  service: KmsV2Service;
  state: DekSeedStateHolder;
  now?: () => number;
  observer?: KmsV2TransformerObserver;
  cacheTtlMs?: number;
}

export class KmsV2Transformer implements Transformer, HeaderWriter {
  private readonly providerName: string;
  private readonly ref: KmsProviderRef;
  private readonly service: KmsV2Service;
  private readonly state: DekSeedStateHolder;
  private readonly now: () => number;
  private readonly observer: KmsV2TransformerObserver;
  private readonly cache: ExpiringCache<DataAead>;
  /** Decrypt calls in flight by cache key: concurrent cold reads of one seed share one call. */
  private readonly pending = new Map<string, Promise<DataAead>>();
  /** key_id → `sha256:` hash, for read origins (a handful of key_ids ever). */
  private readonly hashes = new Map<string, string>();

  constructor(options: KmsV2TransformerOptions) {
    this.providerName = options.providerName;
    this.ref = { name: options.providerName, apiVersion: 'v2', ...(options.endpoint ? { endpoint: options.endpoint } : {}) };
    this.service = options.service;
    this.state = options.state;
    this.now = options.now ?? Date.now;
    this.observer = options.observer ?? {};
    this.cache = new ExpiringCache(options.cacheTtlMs ?? DEK_SOURCE_CACHE_TTL_MS, this.now);
  }

  toStorage(plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer> {
    return this.toStorageWithHeader(NO_HEADER, plaintext, dataCtx);
  }

  /**
   * `header ‖ EncryptedObject` in one buffer: the data is sealed straight behind the header and the
   * field-1 framing, and the state's pre-encoded fields 2–5 (validated when the seed was made) are
   * appended by the same call, so a write makes one output allocation and no re-encoding.
   */
  async toStorageWithHeader(header: Uint8Array, plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer> {
    try {
      if (!this.state.ready) await this.state.whenPrimed();
      const state = this.state.forWrite();
      // Re-inserting the write seed keeps it from ever missing the cache (and drives the GC).
      this.cache.set(state.cacheKey, state.aead);
      this.observer.dekSourceCacheSize?.(this.providerName, this.cache.size);
      const front = encryptedDataHeader(header, state.aead.overhead + plaintext.length);
      const stored = state.aead.seal(plaintext, dataCtx, front, state.encodedFields);
      this.observer.keyIdUsed?.('to_storage', this.providerName, state.keyID);
      return stored;
    } catch (err) {
      throw new KmsWriteError(this.ref, err);
    }
  }

  async fromStorage(stored: Uint8Array, dataCtx: Uint8Array): Promise<TransformResult> {
    const object = decodeEncryptedObject(stored);
    validateEncryptedObject(object);
    // Most reads are of values written under the current seed: comparing the object's DEK source
    // fields with the state's (a few dozen bytes) finds its AEAD without hashing a cache key.
    const writeState = this.state.ready ? this.state.current() : undefined;
    let aead = writeState !== undefined && sameDekSource(object, writeState) ? writeState.aead : undefined;
    const cacheKey = aead ? '' : dekSourceCacheKey(object.encryptedDEKSourceType, object.encryptedDEKSource, object.keyID, object.annotations);
    aead ??= this.cache.get(cacheKey);
    if (!aead) {
      let pending = this.pending.get(cacheKey);
      if (!pending) {
        this.observer.cacheMiss?.();
        pending = this.unwrap(object, cacheKey).finally(() => this.pending.delete(cacheKey));
        this.pending.set(cacheKey, pending);
      }
      aead = await pending;
    }
    this.observer.keyIdUsed?.('from_storage', this.providerName, object.keyID);
    const plaintext = aead.open(object.encryptedData, dataCtx);
    if (!this.state.ready) await this.state.whenPrimed();
    const current = this.state.current();
    const stale = current.keyID !== object.keyID || current.type !== object.encryptedDEKSourceType;
    return {
      plaintext,
      stale,
      origin: { provider: 'kms', name: this.providerName, kmsApiVersion: 'v2', keyIdHash: this.hashOf(object.keyID) },
    };
  }

  /** Asks the plugin for the DEK/seed of `object` and caches what it becomes. */
  private async unwrap(object: EncryptedObject, cacheKey: string): Promise<DataAead> {
    let key: Uint8Array;
    try {
      // The object's byte fields are views of the stored value; the request only reads them.
      key = await this.service.decrypt(randomUUID(), {
        ciphertext: object.encryptedDEKSource,
        keyId: object.keyID,
        annotations: object.annotations,
      });
    } catch (err) {
      // kube's text, after the provider and its endpoint (naming.ts).
      const message = `${kmsProviderLabel(this.ref)}: ${unreachablePrefix(err)}failed to decrypt DEK, error: ${messageOf(err)}`;
      // An unreachable plugin stays KMS_UNAVAILABLE (with its gRPC code) for callers and metrics.
      // The key_id's hash travels with it: a refusal of a retired KEK version is reported naming the version.
      if (err instanceof KmsUnavailableError) throw new KmsUnavailableError(message, err.grpcCode, { cause: err, unreachable: err.unreachable, keyIdHash: this.hashOf(object.keyID) });
      throw new EnvelopeError(message, { cause: err });
    }
    const aead = object.encryptedDEKSourceType === AES_GCM_KEY ? new AesGcm(key) : new ExtendedNonceGcm(key, { now: this.now });
    this.cache.set(cacheKey, aead);
    this.observer.dekSourceCacheSize?.(this.providerName, this.cache.size);
    return aead;
  }

  private hashOf(keyId: string): string {
    let h = this.hashes.get(keyId);
    if (h === undefined) {
      h = keyIdHash(keyId);
      if (this.hashes.size >= 64) this.hashes.clear();
      this.hashes.set(keyId, h);
    }
    return h;
  }
}

const NO_HEADER = Buffer.alloc(0);

/** The object's DEK source is the state's: same type, key_id, encryptedDEKSource bytes and annotations. */
function sameDekSource(o: EncryptedObject, s: DekSeedState): boolean {
  if (o.encryptedDEKSourceType !== s.type || o.keyID !== s.keyID) return false;
  if (!Buffer.from(o.encryptedDEKSource.buffer, o.encryptedDEKSource.byteOffset, o.encryptedDEKSource.byteLength).equals(s.encryptedDEKSource)) return false;
  const keys = Object.keys(o.annotations);
  if (keys.length !== Object.keys(s.annotations).length) return false;
  for (const k of keys) {
    const mine = s.annotations[k];
    const theirs = o.annotations[k] as Uint8Array;
    if (mine === undefined || !Object.hasOwn(s.annotations, k) || !Buffer.from(theirs.buffer, theirs.byteOffset, theirs.byteLength).equals(mine)) return false;
  }
  return true;
}
