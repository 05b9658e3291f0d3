// Leader election over a coordination.k8s.io/v1 Lease in the store, as client-go's leaderelection
// does it for kube-controller-manager: every replica tries to acquire or renew the Lease every retry
// period with compare-and-swap on the key's revision; a replica that sees another holder's record
// unchanged for the lease duration (by its own monotonic clock, so wall clocks need not agree) takes
// the Lease over; the leader gives up when it has not renewed for the renew deadline (shorter than
// the lease duration, so it stops before anyone may take over) and releases the Lease when it stops
// cleanly. The Lease is stored at `<prefix>/leases/<namespace>/<name>` like kube's, through the same
// EncryptedStore as every object (so `atrest get-raw` and etcdctl show it).
//
// A lease only makes one replica do the work; it is not what keeps data safe. Every write the work
// does is a compare-and-swap of its own, so two replicas that both believe they lead for a moment
// (a paused process waking up) cannot overwrite each other or a client.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';
import { Gauge } from 'prom-client';
import { rfc3339Seconds } from '../k8s-objects/object-model.js';
import { reuseMetric, type Registry } from '../metrics.js';
import type { EncryptedStore } from '../storage/encrypted-store.js';
import { isStoreError } from '../storage/errors.js';
import type { KeyValue } from '../storage/types.js';

export interface LeaderElectionTimings {
  /** How long a holder's record must stay unchanged before another replica may take the Lease (kube default 15 s). */
  leaseDurationMs: number;
  /** The leader gives up after failing to renew for this long (kube default 10 s; < lease duration). */
  renewDeadlineMs: number;
  /** How often to try to acquire or renew (kube default 2 s). */
  retryPeriodMs: number;
}

export { DEFAULT_LEADER_ELECTION } from './defaults.js';

export interface LeaderElectorOptions extends LeaderElectionTimings {
  store: EncryptedStore;
  /** The full storage key of the Lease. */
  key: string;
  name: string;
  namespace: string;
  /** This replica's holderIdentity (default `<hostname>_<uuid>`, like kube-controller-manager's). */
  identity?: string;
  log: Logger;
  registry?: Registry;
  /**
   * Called when this replica becomes the leader: the work, which must end soon after `signal` aborts
   * (leadership lost, or stop()). A new term's work starts only after the previous term's has ended,
   * and stop() releases the Lease only after the work has ended.
   */
  onStartedLeading(signal: AbortSignal): Promise<void> | void;
  /** Wall clock for the Lease's times (ms). */
  now?: () => number;
  /** Monotonic clock for expiry (ms). */
  monotonic?: () => number;
}

/** Lease.spec as stored (coordination.k8s.io/v1). */
interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

/** The holder of a Lease that cannot be read. */
const UNREADABLE_HOLDER = '(unreadable lease)';

/** metav1.MicroTime: RFC 3339 with microseconds, UTC. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** client-go's `leader_election_master_status{name}`: 1 while this replica leads. */
function masterStatus(registry: Registry): Gauge<'name'> {
  return reuseMetric(registry, 'leader_election_master_status', () => new Gauge({ name: 'leader_election_master_status', help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. \'name\' is the string used to identify the lease.', labelNames: ['name'], registers: [registry] }));
}

export class LeaderElector {
  readonly identity: string;
  private readonly now: () => number;
  private readonly mono: () => number;
  private observedRevision = 0;
  private observedAt = 0;
  /** The Lease's uid once read or created (kept across renewals). */
  private uid: string | undefined;
  private leading?: { abort: AbortController; renewedAt: number };
  /** The work of the current (or last) term. */
  private work: Promise<void> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private ticking: Promise<void> = Promise.resolve();
  private readonly gauge: Gauge<'name'> | undefined;

  constructor(private readonly options: LeaderElectorOptions) {
    this.identity = options.identity ?? `${hostname()}_${randomUUID()}`;
    this.now = options.now ?? Date.now;
    this.mono = options.monotonic ?? (() => performance.now());
    this.gauge = options.registry ? masterStatus(options.registry) : undefined;
    this.gauge?.set({ name: options.name }, 0);
  }

  get isLeader(): boolean {
    return this.leading !== undefined;
  }

  start(): void {
    const loop = (): void => {
      if (this.stopped) return;
      this.ticking = this.tick().finally(() => {
        if (!this.stopped) this.timer = setTimeout(loop, this.options.retryPeriodMs);
      });
    };
    loop();
  }

  /** Stops trying; a leader stops its work and releases the Lease so another replica takes it at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking;
    if (this.leading) {
      this.stopLeading('stopped');
      await this.work;
      await this.release();
    }
    await this.work;
  }

  private async tick(): Promise<void> {
    let acquired = false;
    try {
      acquired = await this.tryAcquireOrRenew();
    } catch (err) {
      this.options.log.warn({ lease: this.leaseName(), err: messageOf(err) }, 'leader election: could not read or write the lease');
    }
    const at = this.mono();
    if (acquired) {
      if (this.leading) this.leading.renewedAt = at;
      else this.startLeading(at);
    } else if (this.leading && this.lostTo !== undefined) {
      this.stopLeading(`the lease is held by ${this.lostTo}`);
    } else if (this.leading && at - this.leading.renewedAt >= this.options.renewDeadlineMs) {
      this.stopLeading('failed to renew the lease within the renew deadline');
    }
  }

  /** Set by tryAcquireOrRenew when another holder has a valid lease (we are not the leader). */
  private lostTo: string | undefined;

  private startLeading(at: number): void {
    const abort = new AbortController();
    this.leading = { abort, renewedAt: at };
    this.gauge?.set({ name: this.options.name }, 1);
    this.options.log.info({ lease: this.leaseName(), identity: this.identity }, 'leader election: became the leader');
    this.work = this.work.then(async () => {
      if (abort.signal.aborted) return;
      try {
        await this.options.onStartedLeading(abort.signal);
      } catch (err) {
        this.options.log.error({ err: messageOf(err) }, 'leader election: the leader\'s work failed');
      }
    });
  }

  private stopLeading(why: string): void {
    if (!this.leading) return;
    this.leading.abort.abort();
    this.leading = undefined;
    this.gauge?.set({ name: this.options.name }, 0);
    this.options.log.info({ lease: this.leaseName(), identity: this.identity, why }, 'leader election: stopped leading');
  }

  private leaseName(): string {
    return `${this.options.namespace}/${this.options.name}`;
  }

  private lease(spec: LeaseSpec, createdAt: string | undefined): Buffer {
    return Buffer.from(JSON.stringify({
      kind: 'Lease', apiVersion: 'coordination.k8s.io/v1',
      metadata: { name: this.options.name, namespace: this.options.namespace, uid: (this.uid ??= randomUUID()), ...(createdAt ? { creationTimestamp: createdAt } : {}) },
      spec,
    }));
  }

  /**
   * The stored Lease. One that cannot be decrypted or parsed (its key was dropped from the
   * configuration, say) reads as held by an unknown holder: like any other holder's, it is taken over
   * (overwritten, compare-and-swap) once it has stayed unchanged for the lease duration.
   */
  private async read(): Promise<{ kv: KeyValue; spec: LeaseSpec; created?: string } | undefined> {
    const kv = await this.options.store.store.get(this.options.key);
    if (!kv) return undefined;
    let obj: { metadata?: { uid?: string; creationTimestamp?: string }; spec?: LeaseSpec };
    try {
      obj = JSON.parse((await this.options.store.decrypt(kv)).plaintext.toString('utf8')) as typeof obj;
      if (typeof obj !== 'object' || obj === null) throw new Error('not a JSON object');
    } catch (err) {
      if (kv.modRevision !== this.observedRevision) this.options.log.warn({ lease: this.leaseName(), err: messageOf(err) }, 'leader election: the stored lease cannot be read; it is taken over once it expires');
      return { kv, spec: { holderIdentity: UNREADABLE_HOLDER } };
    }
    if (obj.metadata?.uid) this.uid = obj.metadata.uid;
    return { kv, spec: obj.spec ?? {}, ...(obj.metadata?.creationTimestamp ? { created: obj.metadata.creationTimestamp } : {}) };
  }

  /** client-go's tryAcquireOrRenew: true when this replica holds the Lease afterwards. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    this.lostTo = undefined;
    const nowMs = this.now();
    const durationSeconds = Math.max(1, Math.ceil(this.options.leaseDurationMs / 1000));
    const current = await this.read();
    if (!current) {
      const spec: LeaseSpec = { holderIdentity: this.identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(nowMs), renewTime: microTime(nowMs), leaseTransitions: 0 };
      try {
        this.observedRevision = await this.options.store.create(this.options.key, this.lease(spec, rfc3339Seconds(nowMs)));
      } catch (err) {
        if (isStoreError(err, 'KEY_EXISTS')) return false; // another replica created it first
        throw err;
      }
      this.observedAt = this.mono();
      return true;
    }
    const { kv, spec } = current;
    if (kv.modRevision !== this.observedRevision) {
      this.observedRevision = kv.modRevision;
      this.observedAt = this.mono();
    }
    const holder = spec.holderIdentity ?? '';
    const mine = holder === this.identity;
    const validForMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (holder !== '' && !mine && this.observedAt + validForMs > this.mono()) {
      this.lostTo = holder;
      return false;
    }
    const next: LeaseSpec = {
      holderIdentity: this.identity,
      leaseDurationSeconds: durationSeconds,
      acquireTime: mine && spec.acquireTime ? spec.acquireTime : microTime(nowMs),
      renewTime: microTime(nowMs),
      leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
    };
    try {
      this.observedRevision = await this.options.store.update(this.options.key, this.lease(next, current.created), kv.modRevision);
    } catch (err) {
      if (isStoreError(err, 'CONFLICT') || isStoreError(err, 'NOT_FOUND')) return false; // someone else wrote it: look again next time
      throw err;
    }
    this.observedAt = this.mono();
    if (!mine) this.options.log.info({ lease: this.leaseName(), identity: this.identity, previousHolder: holder || undefined }, 'leader election: acquired the lease');
    return true;
  }

  /** ReleaseOnCancel: an empty holder, so the next replica acquires without waiting out the lease. */
  private async release(): Promise<void> {
    try {
      const current = await this.read();
      if (!current || current.spec.holderIdentity !== this.identity) return;
      const nowMs = this.now();
      const spec: LeaseSpec = { holderIdentity: '', leaseDurationSeconds: 1, acquireTime: microTime(nowMs), renewTime: microTime(nowMs), leaseTransitions: current.spec.leaseTransitions ?? 0 };
      await this.options.store.update(this.options.key, this.lease(spec, current.created), current.kv.modRevision);
      this.options.log.info({ lease: this.leaseName(), identity: this.identity }, 'leader election: released the lease');
    } catch (err) {
      this.options.log.warn({ lease: this.leaseName(), err: messageOf(err) }, 'leader election: could not release the lease');
    }
  }
}
