// The kms v1 envelope transformer (format.md §1.5, §4): every write draws a fresh 32-byte DEK, has
// the plugin wrap it, and stores `u16be len(EDEK) ‖ EDEK ‖ nonce(12) ‖ AES-GCM(ct ‖ tag)` with
// AAD = storage key (kube-apiserver 1.25+). Reads try GCM first, then the CBC layout of 1.10–1.23
// data (no AAD; a CBC success is stale). Unwrapped DEKs live in an LRU of `cachesize` entries keyed
// by base64(EDEK), filled on write and on read miss; a negative size disables it.
// The returned bytes exclude the `k8s:enc:kms:v1:<name>:` prefix (the config builder adds it).
//
// Write-ahead DEKs (`prefetch`): as in kube-apiserver every write gets its own fresh DEK, wrapped
// by its own plugin Encrypt call (one call per write, no DEK ever encrypts two values), but under a
// steady write load the call is made ahead of the write: a small pool of freshly generated and
// already wrapped DEKs, each taken by exactly one write and replaced by one background Encrypt
// (concurrent calls, no serialisation). An entry older than PREFETCH_MAX_AGE_MS is thrown away
// unused, so a value is never written under a wrap older than that (a KEK rotated at the plugin is
// used by writes within that time, like calls in flight). The pool grows only while writes miss it
// in quick succession, so at low write rates it stays empty and every write calls the plugin itself;
// at most `prefetch` calls per burst are wasted when a burst ends. What is stored is exactly what
// kube-apiserver stores and reads (u16 length, EDEK, GCM data): the bytes cannot tell the two apart.
import { LRUCache } from 'lru-cache';
import { EnvelopeError, KmsWriteError, aggregateMessage } from '../kms/errors.js';
import type { KmsV1Service } from '../kms/service.js';
import { messageOf } from '../errors.js';
import type { TransformResult, Transformer } from './types.js';
import { AesCbc, AesGcm } from '../crypto/index.js';
import { randomBytes } from 'node:crypto';

export const KMS_V1_DEFAULT_CACHE_SIZE = 1000;
const DEK_SIZE = 32;
const MAX_EDEK_SIZE = 0xffff;
/** A prefetched wrapped DEK older than this is discarded unused. */
export const PREFETCH_MAX_AGE_MS = 2_000;

/** What the transformer reports to metrics (src/kms/metrics.ts implements it). */
export interface KmsV1TransformerObserver {
  cacheMiss?(): void;
  cacheFill?(percent: number): void;
  arrival?(direction: 'to_storage' | 'from_storage'): void;
}

export interface KmsV1TransformerOptions {
  providerName: string;
  service: KmsV1Service;
  /** `kms.cachesize`: > 0 entries; < 0 disables the cache. Default 1000. */
  cacheSize?: number;
  observer?: KmsV1TransformerObserver;
  /**
   * Wrapped DEKs kept ready for the next writes (0, the default here: every write calls the plugin
   * itself; the KMS factory turns it on). Each DEK is still used for one write only.
   */
  prefetch?: number;
  /** Clock for the prefetch pool's age limit (tests). */
  now?: () => number;
}

/** A fresh DEK wrapped ahead of its write. */
interface ReadyDek {
  edek: Uint8Array;
  ciphers: DekCiphers;
  at: number;
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
  private readonly service: KmsV1Service;
  private readonly cacheSize: number;
  private readonly cache: LRUCache<string, DekCiphers> | undefined;
  private readonly observer: KmsV1TransformerObserver;
  /** Decrypt calls in flight by base64(EDEK): concurrent cold reads of one DEK share one call. */
  private readonly pending = new Map<string, Promise<DekCiphers>>();
  private readonly prefetchMax: number;
  private readonly now: () => number;
  /** Ready wrapped DEKs, oldest first; `prefetchTarget` is how many the pool currently aims at. */
  private readonly ready: ReadyDek[] = [];
  private prefetchTarget = 0;
  private prefetching = 0;
  private lastMissAt = -Infinity;

  constructor(options: KmsV1TransformerOptions) {
    this.providerName = options.providerName;
    this.service = options.service;
    this.cacheSize = options.cacheSize ?? KMS_V1_DEFAULT_CACHE_SIZE;
    if (this.cacheSize === 0) throw new EnvelopeError('cachesize should be a positive value, or negative to disable');
    this.cache = this.cacheSize > 0 ? new LRUCache({ max: this.cacheSize }) : undefined;
    this.observer = options.observer ?? {};
    this.prefetchMax = Math.max(0, Math.floor(options.prefetch ?? 0));
    this.now = options.now ?? (() => performance.now());
  }

  async toStorage(plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer> {
    this.observer.arrival?.('to_storage');
    try {
      // Plugin errors keep their own type and code; KmsWriteError below names the provider.
      const { edek, ciphers } = this.takeReady() ?? (await this.wrapFresh());
      this.remember(edek, ciphers);
      const header = Buffer.allocUnsafe(2 + edek.length);
      header.writeUInt16BE(edek.length, 0);
      header.set(edek, 2);
      return ciphers.gcm.seal(plaintext, dataCtx, header);
    } catch (err) {
      throw new KmsWriteError(this.providerName, 'v1', err);
    }
  }

  /** How many wrapped DEKs are ready and how many Encrypt calls are making more (metrics, tests). */
  prefetchState(): { ready: number; inFlight: number; target: number } {
    return { ready: this.ready.length, inFlight: this.prefetching, target: this.prefetchTarget };
  }

  /** A fresh 32-byte DEK and its wrap by the plugin (one Encrypt call). */
  private async wrapFresh(): Promise<{ edek: Uint8Array; ciphers: DekCiphers; at: number }> {
    const dek = randomBytes(DEK_SIZE);
    try {
      const at = this.now();
      const edek = await this.service.encrypt(dek);
      if (edek.length > MAX_EDEK_SIZE) throw new EnvelopeError('cryptobyte: length overflow');
      return { edek, ciphers: new DekCiphers(dek), at };
    } finally {
      dek.fill(0);
    }
  }

  /** The oldest ready DEK younger than the age limit (removed from the pool), and the pool topped up. */
  private takeReady(): ReadyDek | undefined {
    if (this.prefetchMax === 0) return undefined;
    const now = this.now();
    while (this.ready.length > 0 && now - this.ready[0]!.at > PREFETCH_MAX_AGE_MS) this.ready.shift();
    const taken = this.ready.shift();
    if (!taken) {
      // Misses in quick succession: the write rate outruns the pool, let it grow by one. A lone
      // miss after a quiet spell starts nothing, so slow writers never pay for unused wraps.
      if (now - this.lastMissAt <= PREFETCH_MAX_AGE_MS) this.prefetchTarget = Math.min(this.prefetchMax, this.prefetchTarget + 1);
      else this.prefetchTarget = 0;
      this.lastMissAt = now;
    }
    // Replace what this write used (or missed): at most prefetchTarget ready or in flight.
    while (this.ready.length + this.prefetching < this.prefetchTarget) {
      this.prefetching++;
      this.wrapFresh().then(
        (entry) => this.ready.push(entry),
        // A failed prefetch only means the next write calls the plugin itself (and reports its error).
        () => { this.prefetchTarget = 0; },
      ).finally(() => { this.prefetching--; });
    }
    return taken;
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

  /** Plugin errors pass through unwrapped, as kube-apiserver does (they keep their gRPC code). */
  private async unwrap(edek: Uint8Array): Promise<DekCiphers> {
    return new DekCiphers(await this.service.decrypt(edek));
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
