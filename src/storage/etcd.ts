// The etcd v3 backend, on the `etcd3` client (gRPC). Keys and values travel as raw bytes. Writes are
// transactions comparing the key's create/mod revision, exactly as kube-apiserver's etcd3 store
// does, so a stale resourceVersion is refused by etcd itself:
//   create:  if create_revision(key) == 0 then put
//   createGuarded: if mod_revision(guard) == seen and create_revision(key) == 0 then put else get both
//   update:  if mod_revision(key) == expected and create_revision(key) > 0 then put else get
//   updateMany: up to 64 of "mod_revision(key_i) == expected_i" then put all else get all (one raft
//            entry, one fsync for the batch; the keys whose compare failed settle, the rest go again)
//   delete:  if mod_revision(key) == expected then delete else get
// Reads are linearizable (serializable: false). Several endpoints: each call goes to a random
// member; a member that just failed is skipped for a second, and transient failures (member down,
// leader election, timeouts) are retried here with backoff within the request deadline. A write
// whose first attempt may have been applied before its response was lost is recognised on retry by
// its own bytes being the key's current value. Watches resume after the last delivered event when
// their connection breaks (keepalive pings notice a silent member).
import { Etcd3, type IKeyValue, type IOptions, type IResponseHeader, type Watcher } from 'etcd3';
import { cooldownPolicies, isTransient, passThroughPolicy } from './etcd-client-policy.js';
import { COMPACTED_MESSAGE, EtcdWatch, toKeyValue, type WatchedEtcd } from './etcd-watch.js';
import { guardChanged, keyExists, StoreError } from './errors.js';
import { asBuffer, prefixEndBytes } from './prefix.js';
import type { CreateGuard, KeyValue, ListOptions, ListResult, Store, UpdateOp, UpdateOutcome, Watch, WatchOptions } from './types.js';
import { WriteHealth } from './write-health.js';

export interface EtcdTlsOptions {
  /** PEM CA bundle that signed the etcd server certificates (`--etcd-cafile`). */
  ca?: Buffer;
  /** PEM client certificate and key for mutual TLS (`--etcd-certfile`, `--etcd-keyfile`). */
  cert?: Buffer;
  key?: Buffer;
}

export interface EtcdStoreOptions {
  /** Client URLs, e.g. `http://127.0.0.1:2379` (kube's `--etcd-servers`, already split on commas). */
  endpoints: string[];
  tls?: EtcdTlsOptions;
  /** How many etcd requests of one `updateMany` are in flight at once: its transactions, or its per-key updates when it falls back to those (default 4). */
  batchConcurrency?: number;
  /**
   * At most this many compare-and-swaps in one transaction of `updateMany` (default 64; etcd refuses
   * more than its `--max-txn-ops`, 128 by default, and then the store falls back to one per key).
   */
  txnOps?: number;
  /** At most this many key+value bytes in one such transaction (default 512 KiB; etcd's `--max-request-bytes` is 1.5 MiB). */
  txnBytes?: number;
  /** How long `ping` (the `etcd` health check) waits for an answer (default 2000 ms, kube's etcd health timeout). */
  dialTimeoutMs?: number;
  /** Deadline of one operation including its retries (default 15000 ms). */
  requestTimeoutMs?: number;
  /**
   * Deadline of one attempt of a write (default 3000 ms). A write sent to a member that lost its
   * leader waits ~6 s in etcd before failing; giving up sooner and trying another member is safe
   * because every write is a compare-and-swap (a late first attempt cannot apply twice).
   */
  writeAttemptTimeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const FUTURE_MESSAGE = 'required revision is a future revision';
/** etcd's answer to a request over --max-request-bytes (rpctypes.ErrRequestTooLarge). */
const TOO_LARGE_MESSAGE = 'etcdserver: request is too large';
/** etcd's answer to writes while its NOSPACE alarm is raised (rpctypes.ErrNoSpace). */
const NO_SPACE_MESSAGE = 'etcdserver: mvcc: database space exceeded';

/** What the etcd store offers beyond Store's required methods. */
export interface EtcdStoreExtras {
  compact(revision: number): Promise<void>;
  createGuarded(key: string, value: Uint8Array, guard: CreateGuard): Promise<number>;
  updateMany(ops: readonly UpdateOp[]): Promise<UpdateOutcome[]>;
}

export function openEtcdStore(options: EtcdStoreOptions): Store & EtcdStoreExtras {
  return new EtcdStore(options);
}

class EtcdStore implements Store, WatchedEtcd {
  private readonly client: Etcd3;
  private readonly requestTimeoutMs: number;
  private readonly writeAttemptTimeoutMs: number;
  private readonly batchConcurrency: number;
  private readonly txnOps: number;
  /** The server refused a multi-key transaction for its size: updateMany goes one key per transaction. */
  private txnRefused = false;
  private readonly txnBytes: number;
  private readonly pingTimeoutMs: number;
  private readonly watches = new Set<EtcdWatch>();
  private closed = false;
  /** Revisions below this one are known to be compacted (etcd's compaction point only grows); 0: nothing known. */
  private knownCompactRevision = 0;
  private readonly writeHealth = new WriteHealth();

  constructor(options: EtcdStoreOptions) {
    if (options.endpoints.length === 0) throw new StoreError('UNAVAILABLE', 'no etcd endpoints given');
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this.writeAttemptTimeoutMs = options.writeAttemptTimeoutMs ?? 3_000;
    this.batchConcurrency = Math.max(1, options.batchConcurrency ?? 4);
    this.txnOps = Math.max(1, Math.min(128, options.txnOps ?? 64));
    this.txnBytes = Math.max(1, options.txnBytes ?? 512 * 1024);
    this.pingTimeoutMs = options.dialTimeoutMs ?? 2_000;
    const clientOptions: IOptions = {
      hosts: options.endpoints.map((e) => e.trim()).filter((e) => e !== ''),
      grpcOptions: {
        // Large lists (thousands of secrets) exceed gRPC's 4 MiB default.
        'grpc.max_receive_message_length': -1,
        'grpc.max_send_message_length': -1,
        'grpc.keepalive_time_ms': 30_000,
        'grpc.keepalive_timeout_ms': 10_000,
      },
      faultHandling: { global: passThroughPolicy, host: cooldownPolicies(1000) },
    };
    if (options.tls) {
      clientOptions.credentials = {
        rootCertificate: options.tls.ca ?? (undefined as unknown as Buffer),
        ...(options.tls.key ? { privateKey: options.tls.key } : {}),
        ...(options.tls.cert ? { certChain: options.tls.cert } : {}),
      };
    }
    this.client = new Etcd3(clientOptions);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const res = await this.call('get', key, (deadline) => this.client.kv.range({ key: Buffer.from(key) }, { deadline }));
    const kv = res.kvs[0];
    return kv ? toKeyValue(kv) : undefined;
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    const k = Buffer.from(key);
    const v = asBuffer(value);
    const { res, retried } = await this.callWrite('create', key, (deadline) =>
      this.client.kv.txn(
        {
          compare: [{ key: k, target: 'Create', result: 'Equal', create_revision: 0 }],
          success: [{ request_put: { key: k, value: v } }],
          failure: [{ request_range: { key: k } }],
        },
        { deadline },
      ),
    );
    if (res.succeeded) return revisionOf(res.header);
    const current = firstKv(res.responses[0]?.response_range?.kvs);
    const own = createdByUs(current, v, retried);
    if (own !== undefined) return own;
    throw keyExists(key);
  }

  async update(key: string, value: Uint8Array, expectedRevision: number): Promise<number> {
    const k = Buffer.from(key);
    const v = asBuffer(value);
    const { res, retried } = await this.callWrite('update', key, (deadline) =>
      this.client.kv.txn(
        {
          compare: [
            { key: k, target: 'Mod', result: 'Equal', mod_revision: expectedRevision },
            { key: k, target: 'Create', result: 'Greater', create_revision: 0 },
          ],
          success: [{ request_put: { key: k, value: v } }],
          failure: [{ request_range: { key: k } }],
        },
        { deadline },
      ),
    );
    if (res.succeeded) return revisionOf(res.header);
    const outcome = updateRefused({ key, value: v, expectedRevision }, firstKv(res.responses[0]?.response_range?.kvs), retried);
    if (outcome.ok) return outcome.revision;
    throw outcome.error;
  }

  async createGuarded(key: string, value: Uint8Array, guard: CreateGuard): Promise<number> {
    const k = Buffer.from(key);
    const g = Buffer.from(guard.key);
    const v = asBuffer(value);
    const { res, retried } = await this.callWrite('create', key, (deadline) =>
      this.client.kv.txn(
        {
          compare: [
            { key: g, target: 'Mod', result: 'Equal', mod_revision: guard.modRevision },
            { key: k, target: 'Create', result: 'Equal', create_revision: 0 },
          ],
          success: [{ request_put: { key: k, value: v } }],
          failure: [{ request_range: { key: g } }, { request_range: { key: k } }],
        },
        { deadline },
      ),
    );
    if (res.succeeded) return revisionOf(res.header);
    // Our own earlier attempt may have been applied (under the guard) before its connection broke.
    const own = createdByUs(firstKv(res.responses[1]?.response_range?.kvs), v, retried);
    if (own !== undefined) return own;
    const guardKv = firstKv(res.responses[0]?.response_range?.kvs);
    if (guardKv?.modRevision !== guard.modRevision) throw guardChanged(key, guard, guardKv);
    throw keyExists(key);
  }

  /**
   * Bulk update-if-revision: the ops go in batches of several compare-and-swaps per etcd
   * transaction (one raft entry and one fsync per batch instead of per key: etcd's rate of
   * transactions, not of keys, is the bound). A transaction applies only if every compare holds;
   * when one fails, its failure branch reads all of its keys at that same revision, so the ops
   * whose key moved get their CONFLICT / NOT_FOUND outcome and the rest go again in a smaller
   * transaction. No op is ever written over a revision other than its own `expectedRevision`.
   */
  async updateMany(ops: readonly UpdateOp[]): Promise<UpdateOutcome[]> {
    const outcomes = new Array<UpdateOutcome>(ops.length);
    const batches: number[][] = [];
    let batch: number[] = [];
    let keys = new Set<string>();
    let bytes = 0;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i] as UpdateOp;
      const size = Buffer.byteLength(op.key) + op.value.length;
      // etcd refuses a transaction that puts one key twice: a repeated key starts the next batch.
      if (batch.length > 0 && (batch.length >= this.txnOps || bytes + size > this.txnBytes || keys.has(op.key))) {
        batches.push(batch);
        batch = [];
        keys = new Set();
        bytes = 0;
      }
      batch.push(i);
      keys.add(op.key);
      bytes += size;
    }
    if (batch.length > 0) batches.push(batch);
    // Every etcd request of this call (a batch's transaction or a per-key fallback update) takes a
    // slot: at most batchConcurrency of them are in flight, whichever way the batches go.
    const limit = concurrencyLimit(this.batchConcurrency);
    await Promise.all(batches.map((indexes) => this.updateBatch(ops, indexes, outcomes, limit)));
    return outcomes;
  }

  private async updateBatch(ops: readonly UpdateOp[], indexes: number[], outcomes: UpdateOutcome[], limit: ConcurrencyLimit): Promise<void> {
    const oneByOne = (pending: number[]) =>
      Promise.all(pending.map((i) => limit(async () => (outcomes[i] = await this.updateOutcome(ops[i] as UpdateOp)))));
    let pending = indexes;
    while (pending.length > 0) {
      // A single op (or a key without a revision to compare) is the plain update with its own checks.
      if (pending.length === 1 || pending.some((i) => (ops[i] as UpdateOp).expectedRevision <= 0)) {
        await oneByOne(pending);
        return;
      }
      const batchOps = pending.map((i) => ({ op: ops[i] as UpdateOp, key: Buffer.from((ops[i] as UpdateOp).key) }));
      let result: { res: Awaited<ReturnType<Etcd3['kv']['txn']>>; retried: boolean } | undefined;
      try {
        // txnRefused is read once the slot is ours: a batch that waited while another was refused skips its doomed txn.
        result = await limit(async () => this.txnRefused ? undefined : this.callWrite('update', batchOps[0]!.op.key, (deadline) =>
          this.client.kv.txn(
            {
              // mod_revision == expected (> 0) also says the key exists: an absent key's is 0.
              compare: batchOps.map(({ op, key }) => ({ key, target: 'Mod' as const, result: 'Equal' as const, mod_revision: op.expectedRevision })),
              success: batchOps.map(({ op, key }) => ({ request_put: { key, value: asBuffer(op.value) } })),
              failure: batchOps.map(({ key }) => ({ request_range: { key } })),
            },
            { deadline },
          ),
        ));
      } catch (err) {
        // A server with a lower --max-txn-ops or --max-request-bytes: one transaction per key.
        if (err instanceof StoreError && (err.code === 'TOO_LARGE' || /too many operations/.test(err.message))) {
          this.txnRefused = true; // the server's limits do not change while we are connected: skip the doomed txns
          await oneByOne(pending);
          return;
        }
        for (const i of pending) outcomes[i] = { ok: false, error: err as Error };
        return;
      }
      if (result === undefined) {
        await oneByOne(pending);
        return;
      }
      const { res, retried } = result;
      if (res.succeeded) {
        const revision = revisionOf(res.header);
        for (const i of pending) outcomes[i] = { ok: true, revision };
        return;
      }
      const again: number[] = [];
      pending.forEach((i, j) => {
        const op = ops[i] as UpdateOp;
        const current = firstKv(res.responses[j]?.response_range?.kvs);
        // Still at its revision: another op's compare failed, this one goes again.
        if (current && current.modRevision === op.expectedRevision) again.push(i);
        else outcomes[i] = updateRefused(op, current, retried);
      });
      // The failure branch read every key at the revision the compares failed at, so at least one
      // op left the batch; anything else would be a broken server: fall back to one txn per key.
      if (again.length === pending.length) {
        await oneByOne(again);
        return;
      }
      pending = again;
    }
  }

  private async updateOutcome(op: UpdateOp): Promise<UpdateOutcome> {
    try {
      return { ok: true, revision: await this.update(op.key, op.value, op.expectedRevision) };
    } catch (err) {
      return { ok: false, error: err as Error };
    }
  }

  async delete(key: string, expectedRevision?: number): Promise<KeyValue | undefined> {
    const k = Buffer.from(key);
    if (expectedRevision === undefined) {
      const { res } = await this.callWrite('delete', key, (deadline) =>
        this.client.kv.deleteRange({ key: k, prev_kv: true }, { deadline }),
      );
      return firstKv(res.prev_kvs);
    }
    const { res } = await this.callWrite('delete', key, (deadline) =>
      this.client.kv.txn(
        {
          compare: [{ key: k, target: 'Mod', result: 'Equal', mod_revision: expectedRevision }],
          success: [{ request_delete_range: { key: k, prev_kv: true } }],
          failure: [{ request_range: { key: k } }],
        },
        { deadline },
      ),
    );
    if (res.succeeded) return firstKv(res.responses[0]?.response_delete_range?.prev_kvs);
    const current = firstKv(res.responses[0]?.response_range?.kvs);
    if (!current) return undefined;
    throw new StoreError('CONFLICT', `key ${key} was modified: expected revision ${expectedRevision}, current ${current.modRevision}`, {
      key,
      current,
    });
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    const p = Buffer.from(prefix);
    let start = p;
    if (options.after !== undefined) {
      const afterNext = Buffer.concat([Buffer.from(options.after), Buffer.from([0])]);
      if (Buffer.compare(afterNext, p) > 0) start = afterNext;
    }
    const end = p.length === 0 ? Buffer.from([0]) : prefixEndBytes(p);
    const key = start.length === 0 ? Buffer.from([0]) : start;
    const limit = options.limit && options.limit > 0 ? options.limit : 0;
    const revision = options.revision && options.revision > 0 ? options.revision : 0;
    const res = await this.call('list', prefix, (deadline) =>
      this.client.kv.range({ key, range_end: end, limit, revision }, { deadline }),
    );
    return { items: res.kvs.map(toKeyValue), revision: revision || revisionOf(res.header), more: res.more };
  }

  watch(prefix: string, options: WatchOptions): Watch {
    const w = new EtcdWatch(this, prefix, options);
    this.watches.add(w);
    return w;
  }

  async revision(): Promise<number> {
    // A linearizable read of a key that cannot exist; only the header matters.
    const res = await this.call('revision', undefined, (deadline) =>
      this.client.kv.range({ key: Buffer.from([0]), limit: 1, count_only: true }, { deadline }),
    );
    return revisionOf(res.header);
  }

  async compact(revision: number): Promise<void> {
    try {
      await this.call('compact', undefined, (deadline) => this.client.kv.compact({ revision, physical: true }, { deadline }));
    } catch (err) {
      // Compacting at or below the current compaction point is a no-op, as on the embedded store.
      if (!(err instanceof StoreError && err.code === 'COMPACTED')) throw err;
    }
    this.compactedPast(revision);
  }

  async ping(): Promise<void> {
    // kube's etcd health check is a linearizable read: it needs a quorum, not just a reachable member.
    await this.call('health check', undefined, (deadline) =>
      this.client.kv.range({ key: Buffer.from('health'), limit: 1, count_only: true }, { deadline }),
      this.pingTimeoutMs,
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) w.close();
    this.watches.clear();
    this.client.close();
  }

  // ---- internals ----

  newWatcher(prefix: string, startRevision: number): Watcher {
    const p = Buffer.from(prefix);
    const builder = this.client.watch().withPreviousKV().startRevision(String(startRevision));
    if (p.length === 0) builder.inRange({ start: Buffer.from([0]), end: Buffer.from([0]) });
    else builder.prefix(p);
    return builder.watcher();
  }

  detach(w: EtcdWatch): void {
    this.watches.delete(w);
  }

  /**
   * Whether reading at `revision` fails because it was compacted (used to explain a cancelled
   * watch). Below the known compaction point no read is needed. An unreachable etcd is StoreError
   * UNAVAILABLE (after the usual retries), never "not compacted".
   */
  async compactedAt(revision: number): Promise<boolean> {
    if (revision < this.knownCompactRevision) return true;
    try {
      await this.call('compaction check', undefined, (deadline) =>
        this.client.kv.range({ key: Buffer.from([0]), limit: 1, count_only: true, revision }, { deadline }),
      );
      return false;
    } catch (err) {
      if (err instanceof StoreError && err.code === 'FUTURE_REVISION') return false; // not written yet, so not compacted either
      if (!(err instanceof StoreError && err.code === 'COMPACTED')) throw err;
      this.compactedPast(revision + 1);
      return true;
    }
  }

  /**
   * The revision etcd has compacted to (the oldest one still readable), given one that is compacted:
   * etcd does not return it to range calls and the etcd3 client drops it from the cancelled watch
   * response, so it is found by bisecting between what is known compacted and the current revision,
   * and remembered (it only grows): the next refused watch costs one read while it has not moved.
   * Kube names it in its 410 text, "too old resource version: X (Y)". StoreError UNAVAILABLE when
   * etcd cannot be read.
   */
  async compactRevisionAbove(compacted: number): Promise<number> {
    let lo = compacted;
    const known = this.knownCompactRevision;
    if (known > compacted) {
      if (!(await this.compactedAt(known))) return known;
      lo = known;
    }
    let hi = await this.revision();
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (await this.compactedAt(mid)) lo = mid;
      else hi = mid;
    }
    this.compactedPast(hi);
    return hi;
  }

  /** Revisions below `revision` are known to be compacted. */
  private compactedPast(revision: number): void {
    this.knownCompactRevision = Math.max(this.knownCompactRevision, revision);
  }

  private async callWrite<T>(op: string, key: string, fn: (deadline: number) => Promise<T>): Promise<{ res: T; retried: boolean }> {
    let attempts = 0;
    try {
      const res = await this.call(op, key, (deadline) => {
        attempts++;
        return fn(Math.min(deadline, Date.now() + this.writeAttemptTimeoutMs));
      });
      this.writeHealth.succeeded();
      return { res, retried: attempts > 1 };
    } catch (err) {
      this.writeHealth.record(err);
      throw err;
    }
  }

  /** The last write failure for lack of space, or etcd's NOSPACE / CORRUPT alarm. */
  async writable(): Promise<void> {
    await this.writeHealth.check(async () => {
      const res = await this.call('alarm list', undefined, (deadline) =>
        this.client.maintenance.alarm({ action: 'Get', memberID: 0, alarm: 'None' }, { deadline }), this.pingTimeoutMs);
      const alarms = new Set(res.alarms.map((a) => String(a.alarm)));
      if (alarms.has('Nospace')) {
        throw new StoreError('NO_SPACE', 'etcd has raised its NOSPACE alarm (the database is over --quota-backend-bytes): every write is refused until an operator compacts, defragments and disarms it (etcdctl alarm disarm)');
      }
      if (alarms.has('Corrupt')) throw new StoreError('IO_ERROR', 'etcd has raised its CORRUPT alarm: a member\'s data is inconsistent; writes are refused');
    });
  }

  /**
   * Runs one etcd call with a deadline, retrying transient failures (unreachable member, leader
   * election, request timed out) with backoff until `timeoutMs` has passed; maps errors to StoreError.
   */
  private async call<T>(op: string, key: string | undefined, fn: (deadline: number) => Promise<T>, timeoutMs = this.requestTimeoutMs): Promise<T> {
    const what = key === undefined ? `etcd ${op}` : `etcd ${op} of ${key}`;
    if (this.closed) throw new StoreError('UNAVAILABLE', `${what}: the store is closed`, { key });
    const deadline = Date.now() + timeoutMs;
    let backoff = 25;
    for (;;) {
      try {
        return await fn(deadline);
      } catch (err) {
        const e = err as Error;
        if (e.message.includes(COMPACTED_MESSAGE)) throw new StoreError('COMPACTED', `${what}: ${e.message}`, { key, cause: err });
        if (e.message.includes(FUTURE_MESSAGE)) throw new StoreError('FUTURE_REVISION', `${what}: ${e.message}`, { key, cause: err });
        // Lasting refusals: retrying the same write cannot help (kube answers 413 for the first).
        if (e.message.includes(TOO_LARGE_MESSAGE)) throw new StoreError('TOO_LARGE', TOO_LARGE_MESSAGE, { key, cause: err });
        if (e.message.includes(NO_SPACE_MESSAGE)) {
          throw new StoreError('NO_SPACE', `${what}: ${e.message} (etcd's NOSPACE alarm: compact and defragment etcd or raise --quota-backend-bytes, then etcdctl alarm disarm)`, { key, cause: err });
        }
        const transient = isTransient(e);
        if (!transient || this.closed || Date.now() + backoff >= deadline) {
          throw new StoreError('UNAVAILABLE', `${what}: ${e.message}`, { key, cause: err });
        }
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 500);
      }
    }
  }
}

type ConcurrencyLimit = <T>(fn: () => Promise<T>) => Promise<T>;

/** Runs at most `n` of the functions given to it at once; the others wait, in call order. */
function concurrencyLimit(n: number): ConcurrencyLimit {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active < n) active++;
    else await new Promise<void>((resolve) => waiting.push(resolve)); // the finishing call hands its slot over
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}

/**
 * A create whose compare failed (the key exists): the revision of our own earlier attempt when that
 * attempt was applied before its response was lost (the key was created with exactly our bytes),
 * else undefined (someone else's key: KEY_EXISTS).
 */
function createdByUs(current: KeyValue | undefined, value: Buffer, retried: boolean): number | undefined {
  return retried && current && current.createRevision === current.modRevision && current.value.equals(value) ? current.modRevision : undefined;
}

/**
 * The outcome of an update whose compare failed, from the key as the failure branch read it:
 * NOT_FOUND, CONFLICT, or success when our own earlier attempt was applied before its response was
 * lost (the key moved past the expected revision to exactly our bytes).
 */
function updateRefused(op: UpdateOp, current: KeyValue | undefined, retried: boolean): UpdateOutcome {
  if (!current) return { ok: false, error: new StoreError('NOT_FOUND', `key ${op.key} not found`, { key: op.key }) };
  if (retried && current.modRevision > op.expectedRevision && current.value.equals(asBuffer(op.value))) {
    return { ok: true, revision: current.modRevision };
  }
  return {
    ok: false,
    error: new StoreError('CONFLICT', `key ${op.key} was modified: expected revision ${op.expectedRevision}, current ${current.modRevision}`, {
      key: op.key,
      current,
    }),
  };
}

function revisionOf(header: IResponseHeader): number {
  return Number(header.revision);
}

function firstKv(kvs: IKeyValue[] | undefined): KeyValue | undefined {
  const kv = kvs?.[0];
  return kv ? toKeyValue(kv) : undefined;
}
