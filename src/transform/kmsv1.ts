// The kms v1 envelope transformer (format.md §1.5, §4): every write draws a fresh 32-byte DEK, has
// the plugin wrap it, and stores `u16be len(EDEK) ‖ EDEK ‖ nonce(12) ‖ AES-GCM(ct ‖ tag)` with
// AAD = storage key (kube-apiserver 1.25+). Reads try GCM first, then the CBC layout of 1.10–1.23
// data (no AAD; a CBC success is stale). Unwrapped DEKs live in an LRU of `cachesize` entries keyed
// by base64(EDEK), filled on write and on read miss; a negative size disables it.
// The returned bytes exclude the `k8s:enc:kms:v1:<name>:` prefix (the config builder adds it).
import { LRUCache } from 'lru-cache';
import { EnvelopeError, KmsUnavailableError, KmsWriteError, aggregateMessage } from '../kms/errors.js';
import { describeKmsFailure, type KmsProviderRef } from '../kms/naming.js';
import type { KmsV1Service } from '../kms/service.js';
import { messageOf } from '../errors.js';
import type { TransformResult, Transformer } from './types.js';
import { AesCbc, AesGcm } from '../crypto/index.js';
import { randomBytes } from 'node:crypto';

export const KMS_V1_DEFAULT_CACHE_SIZE = 1000;
const DEK_SIZE = 32;
const MAX_EDEK_SIZE = 0xffff;

/** What the transformer reports to metrics (src/kms/metrics.ts implements it). */
export interface KmsV1TransformerObserver {
  cacheMiss?(): void;
  cacheFill?(percent: number): void;
  arrival?(direction: 'to_storage' | 'from_storage'): void;
}

export interface KmsV1TransformerOptions {
  providerName: string;
  /** The plugin's `endpoint`, named in errors. */
  endpoint?: string;
  service: KmsV1Service;
  /** `kms.cachesize`: > 0 entries; < 0 disables the cache. Default 1000. */
  cacheSize?: number;
  observer?: KmsV1TransformerObserver;
}

/** One unwrapped DEK, ready for both payload layouts. */
class DekCiphers {
  readonly gcm: AesGcm;
  readonly cbc: AesCbc;

  constructor(dek: Uint8Array) {
    this.gcm = new AesGcm(dek);
    this.cbc = new AesCbc(dek);
  }
}

export class KmsV1Transformer implements Transformer {
  private readonly providerName: string;
  private readonly ref: KmsProviderRef;
  private readonly service: KmsV1Service;
  private readonly cacheSize: number;
  private readonly cache: LRUCache<string, DekCiphers> | undefined;
  private readonly observer: KmsV1TransformerObserver;
  /** Decrypt calls in flight by base64(EDEK): concurrent cold reads of one DEK share one call. */
  private readonly pending = new Map<string, Promise<DekCiphers>>();

  constructor(options: KmsV1TransformerOptions) {
    this.providerName = options.providerName;
    this.ref = { name: options.providerName, apiVersion: 'v1', ...(options.endpoint ? { endpoint: options.endpoint } : {}) };
    this.service = options.service;
    this.cacheSize = options.cacheSize ?? KMS_V1_DEFAULT_CACHE_SIZE;
    if (this.cacheSize === 0) throw new EnvelopeError('cachesize should be a positive value, or negative to disable');
    this.cache = this.cacheSize > 0 ? new LRUCache({ max: this.cacheSize }) : undefined;
    this.observer = options.observer ?? {};
  }

  async toStorage(plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer> {
    this.observer.arrival?.('to_storage');
    const dek = randomBytes(DEK_SIZE);
    try {
      // Plugin errors keep their own type and code; KmsWriteError below names the provider.
      const edek = await this.service.encrypt(dek);
      if (edek.length > MAX_EDEK_SIZE) throw new EnvelopeError('cryptobyte: length overflow');
      const ciphers = new DekCiphers(dek);
      this.remember(edek, ciphers);
      const header = Buffer.allocUnsafe(2 + edek.length);
      header.writeUInt16BE(edek.length, 0);
      header.set(edek, 2);
      return ciphers.gcm.seal(plaintext, dataCtx, header);
    } catch (err) {
      throw new KmsWriteError(this.ref, err);
    } finally {
      dek.fill(0);
    }
  }

  async fromStorage(stored: Uint8Array, dataCtx: Uint8Array): Promise<TransformResult> {
    this.observer.arrival?.('from_storage');
    if (stored.length < 2) throw new EnvelopeError(ERR_LENGTH_PREFIX);
    const edekLength = (stored[0] as number) * 256 + (stored[1] as number);
    if (stored.length < 2 + edekLength) throw new EnvelopeError(ERR_LENGTH_PREFIX);
    const edek = stored.subarray(2, 2 + edekLength);
    const payload = stored.subarray(2 + edekLength);

    let ciphers: DekCiphers | undefined;
    if (this.cache) {
      const cacheKey = base64(edek);
      ciphers = this.cache.get(cacheKey);
      if (!ciphers) {
        let pending = this.pending.get(cacheKey);
        if (!pending) {
          this.observer.cacheMiss?.();
          pending = this.unwrap(edek).then((c) => {
            this.remember(edek, c, cacheKey);
            return c;
          }).finally(() => this.pending.delete(cacheKey));
          this.pending.set(cacheKey, pending);
        }
        ciphers = await pending;
      }
    } else {
      ciphers = await this.unwrap(edek);
    }
    const origin = { provider: 'kms' as const, name: this.providerName, kmsApiVersion: 'v1' as const };
    let gcmError: string;
    try {
      return { plaintext: ciphers.gcm.open(payload, dataCtx), stale: false, origin };
    } catch (err) {
      gcmError = messageOf(err);
    }
    try {
      return { plaintext: ciphers.cbc.open(payload), stale: true, origin };
    } catch (err) {
      throw new EnvelopeError(aggregateMessage([gcmError, messageOf(err)]));
    }
  }

  /**
   * Plugin errors keep their type and gRPC code, as kube-apiserver's; an unreachable or timed-out
   * plugin's message is prefixed with the provider and its endpoint (naming.ts).
   */
  private async unwrap(edek: Uint8Array): Promise<DekCiphers> {
    try {
      return new DekCiphers(await this.service.decrypt(edek));
    } catch (err) {
      if (err instanceof KmsUnavailableError) throw new KmsUnavailableError(describeKmsFailure(this.ref, err, 'cannot decrypt'), err.grpcCode, { cause: err, unreachable: err.unreachable });
      throw err;
    }
  }

  private remember(edek: Uint8Array, ciphers: DekCiphers, key?: string): void {
    if (!this.cache) return;
    this.cache.set(key || base64(edek), ciphers);
    this.observer.cacheFill?.(this.cache.size / this.cacheSize);
  }
}

const ERR_LENGTH_PREFIX = 'invalid data encountered by envelope transformer: failed to read uint16 length prefixed data';

function base64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
}
