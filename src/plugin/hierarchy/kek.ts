// The key hierarchy as a KekBackend wrapper (KEP-3299's "key hierarchy" inside the plugin): the
// handlers call it like any backend, and it keeps the remote KEK (kmip, pkcs11) off the hot path.
// Encrypt seals the DEK or seed with the current local KEK in memory; the wrapped local KEK travels
// with the value (kms v1: inside the envelope; kms v2: in an annotation), so any plugin process that
// can reach the remote can decrypt any value. Decrypt opens values under local KEKs it holds (the
// current one and the decrypt cache) and unwraps an unknown local KEK through the remote once.
// Values from before the hierarchy (the remote backend's own ciphertexts) go to the remote as before.
// A remote version retired by any process stops opening values at the next refresh (retirement.ts).
// key_id is the remote KEK version's that wrapped the current local KEK, so a remote rotation still
// makes kube-apiserver re-encrypt.
import { createSecretKey } from 'node:crypto';
import type { Logger } from '../../log.js';
import { newRegistry, type Registry } from '../../metrics.js';
import type { Annotations, KekBackend, WrapOptions, WrapResult } from '../backend.js';
import { LocalKekCache } from './cache.js';
import type { HierarchySettings } from './config.js';
import { isEnvelope, parseEnvelope } from './envelope.js';
import { LocalKekLifecycle } from './lifecycle.js';
import { InMemoryKek, cacheKeyOf } from './local-kek.js';
import { HierarchyMetrics } from './metrics.js';
import { RemoteKek, isRefusal } from './remote.js';
import { RemoteRetirements } from './retirement.js';

export interface HierarchyContext {
  log: Logger;
  metrics?: Registry;
  /** Names the remote in logs, errors and health, e.g. `KMIP server 10.0.0.5:5696`. */
  endpoint: string;
  now?: () => number;
}

const DEFAULT_VERIFY_INTERVAL_MS = 60_000;

export class HierarchyKek implements KekBackend {
  readonly kind: string;
  private readonly cache: LocalKekCache;
  private readonly metrics: HierarchyMetrics;
  private readonly verifyIntervalMs: number;
  private readonly retirements: RemoteRetirements;
  private lastVerify: number;

  private constructor(
    private readonly remote: RemoteKek,
    private readonly lifecycle: LocalKekLifecycle,
    cache: LocalKekCache,
    metrics: HierarchyMetrics,
    settings: HierarchySettings,
    private readonly now: () => number,
    log: Logger,
  ) {
    this.kind = remote.inner.kind;
    this.retirements = new RemoteRetirements(remote.inner, { endpoint: remote.endpoint, log, cache });
    this.cache = cache;
    this.metrics = metrics;
    this.verifyIntervalMs = settings.verifyIntervalMs ?? DEFAULT_VERIFY_INTERVAL_MS;
    this.lastVerify = now();
  }

  /**
   * Puts a key hierarchy in front of an opened remote backend: makes the first local KEK (one
   * remote wrap). Fails closed, naming the remote, when the remote cannot wrap it; `inner` is then
   * left to the caller to close.
   */
  static async open(inner: KekBackend, settings: HierarchySettings, context: HierarchyContext): Promise<HierarchyKek> {
    const now = context.now ?? Date.now;
    const cache = new LocalKekCache(settings.cacheSize);
    // The gauges read the hierarchy at scrape time; it exists once the first local KEK is made.
    const made: { kek?: HierarchyKek } = {};
    const metrics = new HierarchyMetrics(context.metrics ?? newRegistry(), {
      remoteUp: () => made.kek?.remote.status.up ?? true,
      lastRemoteSuccess: () => made.kek?.remote.status.lastSuccess,
      current: () => {
        const l = made.kek?.lifecycle;
        return l ? { uses: l.current.uses, createdAt: l.current.createdAt, overdue: l.overdue } : { uses: 0, createdAt: now(), overdue: false };
      },
      cacheEntries: () => cache.size,
    });
    const remote = new RemoteKek(inner, { endpoint: context.endpoint, timeoutMs: settings.remoteTimeoutMs, log: context.log, metrics, now });
    const lifecycle = await LocalKekLifecycle.start(
      { maxAgeMs: settings.maxAgeMs, maxUses: settings.maxUses, ...(settings.hardMaxUses === undefined ? {} : { hardMaxUses: settings.hardMaxUses }) },
      { remote, cache, metrics, log: context.log, now },
    );
    const kek = new HierarchyKek(remote, lifecycle, cache, metrics, settings, now, context.log);
    made.kek = kek;
    context.log.info({
      event: 'key-hierarchy', remote: context.endpoint, maxAgeMs: settings.maxAgeMs, maxUses: settings.maxUses, cacheSize: settings.cacheSize, remoteTimeoutMs: settings.remoteTimeoutMs,
    }, 'key hierarchy: DEKs and seeds are sealed by a local KEK in memory, wrapped by the remote KEK');
    return kek;
  }

  /** The remote KEK version that wrapped the current local KEK. */
  async currentKeyId(): Promise<string> {
    return this.lifecycle.current.remoteKeyId;
  }

  async currentKeyCreatedAt(): Promise<number | undefined> {
    return this.lifecycle.current.remoteKeyCreatedAt;
  }

  async encrypt(plaintext: Uint8Array, options?: WrapOptions): Promise<WrapResult> {
    const kek = this.lifecycle.forEncrypt();
    const sealed = kek.seal(plaintext, options?.annotations === true);
    return sealed.annotations ? { ciphertext: sealed.ciphertext, keyId: kek.remoteKeyId, annotations: sealed.annotations } : { ciphertext: sealed.ciphertext, keyId: kek.remoteKeyId };
  }

  async decrypt(ciphertext: Uint8Array, annotations?: Annotations): Promise<Buffer> {
    // A value from before the hierarchy: the remote backend's own ciphertext of the DEK or seed.
    if (!isEnvelope(ciphertext)) {
      const { refusal } = this.retirements.versionOf(ciphertext);
      if (refusal) throw refusal;
      return this.remote.unwrap(ciphertext);
    }
    const envelope = parseEnvelope(ciphertext, annotations);
    const key = cacheKeyOf(envelope.wrapped);
    const current = this.lifecycle.current;
    const held = key === current.cacheKey ? current : this.cache.peek(key);
    this.metrics.cacheLookup(held !== undefined);
    // Cached local KEKs of a retired version are dropped at refresh; the current one is marked.
    if (held?.refusal) throw held.refusal;
    const kek = held ?? await this.cache.get(envelope.wrapped, key, (wrapped) => this.unwrapLocalKek(wrapped));
    return kek.open(envelope);
  }

  /**
   * Looks for a rotated remote KEK (the remote backend's refresh) and follows it with a new local
   * KEK; stops using local KEKs of remote versions retired meanwhile (and again those restored);
   * replaces an overdue local KEK; now and then checks that the remote still unwraps the current
   * one. The plugin server calls it every --refresh-interval; a failure (an outage) is reported by
   * the server and retried on the next tick, with everything as it was.
   */
  async refresh(): Promise<void> {
    await this.remote.refresh();
    const remoteKeyId = await this.remote.currentKeyId();
    const refused = this.retirements.update(this.lifecycle.current, remoteKeyId);
    if (refused) this.lifecycle.disown(this.lifecycle.current, refused);
    if (remoteKeyId !== this.lifecycle.current.remoteKeyId) await this.lifecycle.replaceNow('remote_key_changed');
    else await this.lifecycle.replaceIfDue();
    if (this.now() - this.lastVerify >= this.verifyIntervalMs) await this.verify();
  }

  /** Why the remote KEK cannot be reached now (undefined while it can); Encrypt and Decrypt may still work. */
  degraded(): string | undefined {
    const s = this.remote.status;
    if (s.up) return undefined;
    const k = this.lifecycle.current;
    const t = this.now();
    return `remote KEK (${this.remote.endpoint}) unavailable for ${Math.round((t - s.since) / 1000)}s (since ${new Date(s.since).toISOString()}): ${s.reason ?? 'no answer'}; ` +
      `serving with local KEK ${k.fingerprint} from memory (${k.uses} values sealed, ${Math.round((t - k.createdAt) / 1000)}s old${this.lifecycle.overdue ? ', past its limit' : ''})`;
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.remote.inner.close();
  }

  /** A decrypt-cache miss: one remote unwrap, unless the remote version is known to be retired. */
  private async unwrapLocalKek(wrapped: Buffer): Promise<InMemoryKek> {
    const before = this.retirements.versionOf(wrapped);
    if (before.refusal) throw before.refusal;
    const raw = await this.remote.unwrap(wrapped);
    // A refresh may have seen the version retired while the unwrap ran: then do not keep it.
    const after = this.retirements.versionOf(wrapped);
    if (after.refusal) {
      raw.fill(0);
      throw after.refusal;
    }
    return new InMemoryKek(raw, wrapped, after.keyId, this.now());
  }

  /** Asks the remote to unwrap the current local KEK: a refusal (revoked or destroyed remote key) stops it sealing. */
  private async verify(): Promise<void> {
    const kek = this.lifecycle.current;
    this.lastVerify = this.now();
    let raw: Buffer;
    try {
      raw = await this.remote.unwrap(kek.wrapped, 'verify');
    } catch (err) {
      if (isRefusal(err)) this.lifecycle.disown(kek, err);
      throw err;
    }
    const same = raw.length === kek.key.symmetricKeySize && createSecretKey(raw).equals(kek.key);
    raw.fill(0);
    if (!same) this.lifecycle.disown(kek, new Error('it unwraps to a different key'));
  }
}
