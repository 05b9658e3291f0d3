// The current local KEK of the key hierarchy and when it is replaced. A replacement costs one remote
// wrap and is made in the background, so no Encrypt waits for the remote:
//   - at start (the only time a failure stops the plugin: it fails closed, naming the remote);
//   - when --local-kek-max-uses is nearly used up (from 90% on, so the new one is usually ready
//     before the limit) or --local-kek-max-age has passed;
//   - when the remote KEK version changes (refresh), so key_id follows a remote rotation;
//   - when the remote refuses to unwrap the current one (verify: revoked or destroyed remote key).
// While the remote is unavailable the current local KEK keeps sealing past both limits (an outage
// of the key manager must not become an outage of the cluster's writes), up to the AES-GCM bound of
// 2^32 values per key with random nonces, after which Encrypt fails closed. When the remote answers
// but refuses to wrap a replacement (revoked or destroyed key), an overdue local KEK stops sealing:
// the remote's refusal is an operator's decision, its absence is not.
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../log.js';
import { messageOf } from '../../errors.js';
import { BackendError, type BackendErrorCode } from '../backend.js';
import { keyIdHash } from '../metrics.js';
import type { LocalKekCache } from './cache.js';
import { AES_GCM_RANDOM_NONCE_LIMIT, InMemoryKek, LOCAL_KEK_BYTES } from './local-kek.js';
import type { HierarchyMetrics, RotationReason } from './metrics.js';
import { isRefusal, type RemoteKek } from './remote.js';

export interface LifecyclePolicy {
  maxAgeMs: number;
  maxUses: number;
  /** Seals per local KEK never exceeded (default 2^32; tests lower it). */
  hardMaxUses?: number;
  /** Least time between two failed replacement attempts started by Encrypt (default 1000 ms). */
  retryMs?: number;
}

export interface LifecycleDeps {
  remote: RemoteKek;
  cache: LocalKekCache;
  metrics: HierarchyMetrics;
  log: Logger;
  now: () => number;
}

export class LocalKekLifecycle {
  private kek: InMemoryKek;
  private readonly hardMaxUses: number;
  private readonly earlyUses: number;
  private readonly retryMs: number;
  private replacing: Promise<void> | undefined;
  private lastFailure = -Infinity;
  /** The remote answered but refused to wrap a replacement: an overdue local KEK must stop. */
  private refusal: BackendError | undefined;
  /** The remote refused to unwrap the current local KEK: it must not seal another value. */
  private disowned: BackendError | undefined;
  private overdueLogged = false;

  private constructor(first: InMemoryKek, private readonly policy: LifecyclePolicy, private readonly deps: LifecycleDeps) {
    this.kek = first;
    this.hardMaxUses = Math.min(policy.hardMaxUses ?? AES_GCM_RANDOM_NONCE_LIMIT, AES_GCM_RANDOM_NONCE_LIMIT);
    this.earlyUses = policy.maxUses - Math.min(Math.ceil(policy.maxUses / 10), 100_000);
    this.retryMs = policy.retryMs ?? 1000;
  }

  /** Makes the first local KEK; fails (closed) when the remote cannot wrap it. */
  static async start(policy: LifecyclePolicy, deps: LifecycleDeps): Promise<LocalKekLifecycle> {
    let first: InMemoryKek;
    try {
      first = await makeLocalKek(deps);
    } catch (err) {
      throw explained(err, `cannot make the first local KEK: the remote KEK (${deps.remote.endpoint}) did not wrap it`);
    }
    const lifecycle = new LocalKekLifecycle(first, policy, deps);
    lifecycle.adopt(first, 'start', undefined);
    return lifecycle;
  }

  get current(): InMemoryKek {
    return this.kek;
  }

  /** True while the current local KEK is past a limit (its replacement could not be made yet). */
  get overdue(): boolean {
    const k = this.kek;
    return k.uses >= this.policy.maxUses || this.deps.now() - k.createdAt >= this.policy.maxAgeMs;
  }

  /** The local KEK for one Encrypt, its use counted. Never waits for the remote. */
  forEncrypt(): InMemoryKek {
    const k = this.kek;
    if (this.disowned) {
      this.replaceSoon('remote_refused');
      throw this.disowned;
    }
    if (k.uses >= this.earlyUses || this.deps.now() - k.createdAt >= this.policy.maxAgeMs) {
      this.replaceSoon(k.uses >= this.earlyUses ? 'max_uses' : 'max_age');
      if (this.overdue) {
        if (this.refusal) throw this.refusal;
        this.logOverdue(k);
      }
    }
    if (k.uses >= this.hardMaxUses) {
      throw new BackendError('UNAVAILABLE', `local KEK ${k.fingerprint} has sealed ${k.uses} values, the most AES-GCM with random nonces allows, and no new one can be made: the remote KEK (${this.deps.remote.endpoint}) is unavailable (${this.deps.remote.status.reason ?? 'no answer yet'})`);
    }
    k.uses++;
    return k;
  }

  /**
   * Replaces the current local KEK now (refresh: the remote version changed, or a replacement is
   * due). Rejects when the remote cannot wrap one; the current one stays.
   */
  replaceNow(reason: RotationReason): Promise<void> {
    this.replacing ??= this.replace(reason).finally(() => { this.replacing = undefined; });
    return this.replacing;
  }

  /** refresh(): replaces an overdue (or nearly due) local KEK, waiting for it. */
  async replaceIfDue(): Promise<void> {
    const k = this.kek;
    if (this.disowned) return this.replaceNow('remote_refused');
    if (k.uses >= this.earlyUses) return this.replaceNow('max_uses');
    if (this.deps.now() - k.createdAt >= this.policy.maxAgeMs) return this.replaceNow('max_age');
  }

  /** The remote refused to unwrap `kek` (verify): stop sealing with it, and replace it. */
  disown(kek: InMemoryKek, err: unknown): void {
    if (kek !== this.kek) return;
    this.disowned = explained(err, `the remote KEK (${this.deps.remote.endpoint}) no longer unwraps local KEK ${kek.fingerprint}, so it seals nothing more`);
    this.deps.log.error({ event: 'local-kek-disowned', remote: this.deps.remote.endpoint, localKek: kek.fingerprint, err: messageOf(err) },
      'the remote KEK refuses the current local KEK (revoked or destroyed remote key?): Encrypt fails until a new local KEK can be made');
    this.replaceSoon('remote_refused');
  }

  /** Starts a replacement in the background unless one runs or one failed less than retryMs ago. */
  private replaceSoon(reason: RotationReason): void {
    if (this.replacing || this.deps.now() - this.lastFailure < this.retryMs) return;
    this.replaceNow(reason).catch(() => undefined);
  }

  private async replace(reason: RotationReason): Promise<void> {
    let next: InMemoryKek;
    try {
      next = await makeLocalKek(this.deps);
    } catch (err) {
      this.lastFailure = this.deps.now();
      if (isRefusal(err)) this.refusal = explained(err, `local KEK ${this.kek.fingerprint} is past its limit and the remote KEK (${this.deps.remote.endpoint}) refused to wrap a new one`);
      throw err;
    }
    this.adopt(next, reason, this.kek);
  }

  private adopt(next: InMemoryKek, reason: RotationReason, previous: InMemoryKek | undefined): void {
    this.kek = next;
    this.refusal = undefined;
    this.disowned = undefined;
    this.overdueLogged = false;
    this.deps.cache.add(next);
    this.deps.metrics.rotated(reason);
    this.deps.log.info({
      event: 'local-kek-created', reason, localKek: next.fingerprint, keyIdHash: keyIdHash(next.remoteKeyId),
      ...(previous ? { previousLocalKek: previous.fingerprint, previousUses: previous.uses, previousAgeMs: this.deps.now() - previous.createdAt } : {}),
    }, 'new local KEK wrapped by the remote KEK');
  }

  private logOverdue(k: InMemoryKek): void {
    if (this.overdueLogged) return;
    this.overdueLogged = true;
    this.deps.log.warn({
      event: 'local-kek-overdue', remote: this.deps.remote.endpoint, localKek: k.fingerprint, uses: k.uses, ageMs: this.deps.now() - k.createdAt,
      maxUses: this.policy.maxUses, maxAgeMs: this.policy.maxAgeMs, err: this.deps.remote.status.reason,
    }, 'the local KEK is past --local-kek-max-age/--local-kek-max-uses and the remote KEK cannot wrap a new one: it keeps sealing until the remote is back');
  }
}

/** `err` as a BackendError of the same code, its message after `context`. */
function explained(err: unknown, context: string): BackendError {
  const code: BackendErrorCode = err instanceof BackendError ? (err.code as BackendErrorCode) : 'INTERNAL';
  return new BackendError(code, `${context}: ${messageOf(err)}`, { cause: err });
}

/** A fresh local KEK wrapped by the remote's current version (one remote call). */
async function makeLocalKek(deps: LifecycleDeps): Promise<InMemoryKek> {
  const raw = randomBytes(LOCAL_KEK_BYTES);
  try {
    const wrapped = await deps.remote.wrap(raw);
    const createdAt = (await deps.remote.currentKeyId()) === wrapped.keyId ? await deps.remote.currentKeyCreatedAt() : undefined;
    return new InMemoryKek(raw, wrapped.ciphertext, wrapped.keyId, deps.now(), createdAt);
  } finally {
    raw.fill(0);
  }
}
