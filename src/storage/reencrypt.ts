// The re-encryption engine of `atrest rewrite` (src/tools/rewrite.ts) and of the StorageVersionMigration
// controller of `atrest serve` (src/controllers/storage-version-migration): re-encrypts every stale
// value of the selected resources in place, server-side.
// Lists the store at one revision page by page, decrypts each value through the engine, and for a
// stale one encrypts the same plaintext with the current write provider (AAD = the full key) and
// writes it back with compare-and-swap on the revision it was read at (`updateMany`: one
// transaction per batch on the embedded store). A CONFLICT means someone (the API server) wrote the
// key meanwhile: the tool re-reads it, and rewrites it only if the new value is stale too — so a
// concurrent write is never overwritten, and nothing is ever written that was not just decrypted
// from that very revision. A rerun sees only what is still stale, so a stopped run is resumed by
// running it again. Encryption failures stop the run (fail closed: never a plaintext fallback).
// Never logs or returns a value.
import { AtrestError, messageOf } from '../errors.js';
import type { GroupResource } from '../config/types.js';
import { DEFAULT_REWRITE_BATCH_SIZE } from './defaults.js';
import { isStoreError } from './errors.js';
import { normalizePrefix, parseStorageKey } from './keys.js';
import type { KeyValue, ListResult, Store, UpdateOp, UpdateOutcome } from './types.js';
import type { TransformerSet } from '../transform/types.js';

/** Attempts per key after CONFLICTs before the key is reported as still changing. */
export const DEFAULT_REWRITE_MAX_ATTEMPTS = 5;

export type RewriteErrorCode =
  /** A stale value could not be encrypted with the write provider: the run stopped, nothing of that value was written. */
  | 'REWRITE_ENCRYPT_FAILED'
  /** The store failed (not a per-key CONFLICT / NOT_FOUND): the run stopped; rerun to resume. */
  | 'REWRITE_STORE_FAILED'
  /** The run was aborted (signal): rerun to resume. */
  | 'REWRITE_ABORTED';

export class RewriteError extends AtrestError {
  declare readonly code: RewriteErrorCode;
  /** The counts up to the stop. */
  readonly summary: RewriteSummary;

  constructor(code: RewriteErrorCode, message: string, summary: RewriteSummary, options?: { cause?: unknown }) {
    super(code, message, options);
    this.summary = summary;
  }
}

/** The counts a run keeps; reported after every batch (with the undecryptable count) and in the summary. */
export interface RewriteCounts {
  /** Values of the selected resources looked at. */
  scanned: number;
  /** Of those, stale when listed (with --dry-run: what would be rewritten). */
  stale: number;
  /** Written back re-encrypted (0 with --dry-run). */
  rewritten: number;
  /** Current when listed, or made current by another writer before the tool got to them. */
  alreadyCurrent: number;
  /** Compare-and-swap conflicts: the key was re-read (and rewritten when still stale). */
  conflictsRetried: number;
  /** Deleted between the list and the write. */
  deletedMeanwhile: number;
}

export interface RewriteProgress extends RewriteCounts {
  undecryptable: number;
}

export interface RewriteSummary extends RewriteCounts {
  /** The revision the first page was listed at. */
  revision: number;
  dryRun: boolean;
  /** Values that do not decrypt with the configuration (keys only, never values). */
  undecryptable: Array<{ key: string; error: string }>;
  /** Keys still changing after the retry limit: still stale, rerun to finish them. */
  retriesExhausted: string[];
  durationMs: number;
  /** Every selected value ended current (dry run: nothing undecryptable). */
  ok: boolean;
}

export interface RewriteOptions {
  store: Store;
  transformers: TransformerSet;
  etcdPrefix: string;
  selects(gr: GroupResource): boolean;
  /**
   * The key range listed (a prefix ending in `/`, e.g. `/registry/secrets/`); default every key
   * under the etcd prefix. Keys in it that `selects` refuses are still skipped.
   */
  listPrefix?: string;
  /** Resume: start after this full key (the `lastKey` a previous run's afterBatch reported). */
  startAfter?: string;
  /** List at this revision (a resumed run's first revision); falls back to the current one once compacted. */
  revision?: number;
  /** Values listed and written per batch (default 500). */
  batchSize?: number;
  /** Writes per second, 0 or undefined: unlimited. */
  rate?: number;
  /** Count what would be rewritten; write nothing. */
  dryRun?: boolean;
  maxAttempts?: number;
  /** Called after every batch. */
  onProgress?(progress: RewriteProgress): void;
  /**
   * Called after every batch is written, with the last key of the batch and the revision it was
   * listed at: every key up to `lastKey` is done, so a run started with `startAfter: lastKey` (and
   * `revision`) resumes from there. Tests stop a run here.
   */
  afterBatch?(batchNumber: number, position: { lastKey: string; revision: number }): void | Promise<void>;
  signal?: AbortSignal;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Decrypts and encrypts of one page run this many at a time: kms v1 values each need a call to the
 * plugin, and a serial loop would wait on every round trip.
 */
const TRANSFORM_CONCURRENCY = 16;

/** `fn` over `items` with at most `limit` in flight; results in the order of `items`. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * Paces writes to `rate` per second: a token bucket holding at most `capacity` tokens (so at most
 * about a second's worth of writes goes out at once after a pause).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    readonly capacity: number,
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = realSleep,
  ) {
    this.tokens = capacity;
    this.last = now();
  }

  /** Waits until `n` (≤ capacity) tokens are there and takes them. */
  async take(n: number): Promise<void> {
    for (;;) {
      const t = this.now();
      this.tokens = Math.min(this.capacity, this.tokens + ((t - this.last) * this.rate) / 1000);
      this.last = t;
      if (this.tokens >= n) {
        this.tokens -= n;
        return;
      }
      await this.sleep(Math.ceil(((n - this.tokens) * 1000) / this.rate));
    }
  }
}

/** A stale value decrypted at `kv.modRevision`, ready to be re-encrypted. */
interface Pending {
  kv: KeyValue;
  plaintext: Buffer;
}

export async function rewriteStore(options: RewriteOptions): Promise<RewriteSummary> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? realSleep;
  const started = now();
  const prefix = normalizePrefix(options.etcdPrefix);
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_REWRITE_BATCH_SIZE);
  const maxAttempts = Math.max(1, options.maxAttempts ?? DEFAULT_REWRITE_MAX_ATTEMPTS);
  const dryRun = options.dryRun ?? false;
  const rate = options.rate && options.rate > 0 ? options.rate : 0;
  const bucket = rate > 0 ? new TokenBucket(rate, Math.max(1, Math.min(batchSize, Math.floor(rate))), now, sleep) : undefined;
  const { store, transformers } = options;

  const summary: RewriteSummary = {
    revision: 0, dryRun, scanned: 0, stale: 0, rewritten: 0, alreadyCurrent: 0, conflictsRetried: 0,
    deletedMeanwhile: 0, undecryptable: [], retriesExhausted: [], durationMs: 0, ok: false,
  };
  const finish = (): RewriteSummary => {
    summary.durationMs = now() - started;
    summary.undecryptable.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    summary.ok = summary.undecryptable.length === 0 && summary.retriesExhausted.length === 0;
    return summary;
  };
  // A stopped run is never ok, whatever it counted before the stop.
  const fail = (code: RewriteErrorCode, message: string, cause?: unknown): RewriteError =>
    new RewriteError(code, message, { ...finish(), ok: false }, cause === undefined ? undefined : { cause });
  const checkAbort = () => {
    if (options.signal?.aborted) throw fail('REWRITE_ABORTED', 'the rewrite was stopped; run it again to finish');
  };
  const transformerOf = (key: string) => {
    try {
      const gr = parseStorageKey(prefix, key).groupResource;
      return options.selects(gr) ? transformers.forResource(gr) : undefined;
    } catch {
      return undefined; // not an object key
    }
  };
  const encrypt = async (item: Pending): Promise<Buffer> => {
    const transformer = transformerOf(item.kv.key);
    try {
      if (!transformer) throw new Error('the key is not of a selected resource');
      return await transformer.toStorage(item.plaintext, Buffer.from(item.kv.key));
    } catch (err) {
      throw fail('REWRITE_ENCRYPT_FAILED', `cannot encrypt ${item.kv.key} with the write provider: ${messageOf(err)}; stopped, nothing of it was written`, err);
    }
  };
  /** Decrypts; undefined (and counted) when it does not decrypt. */
  const decrypt = async (kv: KeyValue): Promise<{ plaintext: Buffer; stale: boolean } | undefined> => {
    const transformer = transformerOf(kv.key);
    if (!transformer) return undefined;
    try {
      const read = await transformer.fromStorage(kv.value, Buffer.from(kv.key));
      return { plaintext: read.plaintext, stale: read.stale };
    } catch (err) {
      summary.undecryptable.push({ key: kv.key, error: messageOf(err) });
      return undefined;
    }
  };
  const write = async (ops: UpdateOp[]): Promise<UpdateOutcome[]> => {
    try {
      if (store.updateMany) {
        const outcomes = await store.updateMany(ops);
        if (outcomes.length !== ops.length) throw new Error(`the store answered ${outcomes.length} outcomes for ${ops.length} writes`);
        return outcomes;
      }
      const outcomes: UpdateOutcome[] = [];
      for (const op of ops) {
        try {
          outcomes.push({ ok: true, revision: await store.update(op.key, op.value, op.expectedRevision) });
        } catch (err) {
          if (!isStoreError(err, 'CONFLICT') && !isStoreError(err, 'NOT_FOUND')) throw err;
          outcomes.push({ ok: false, error: err });
        }
      }
      return outcomes;
    } catch (err) {
      throw fail('REWRITE_STORE_FAILED', `writing to the store failed: ${messageOf(err)}; run it again to resume`, err);
    }
  };
  const progress = () =>
    options.onProgress?.({
      scanned: summary.scanned, stale: summary.stale, rewritten: summary.rewritten, alreadyCurrent: summary.alreadyCurrent,
      conflictsRetried: summary.conflictsRetried, deletedMeanwhile: summary.deletedMeanwhile, undecryptable: summary.undecryptable.length,
    });

  /** A key whose CAS failed: re-read it and rewrite it only if what is there now is stale, bounded. */
  const retry = async (key: string, current: KeyValue | undefined): Promise<void> => {
    let kv = current;
    for (let attempt = 1; ; attempt++) {
      if (kv === undefined) {
        try {
          kv = await store.get(key);
        } catch (err) {
          throw fail('REWRITE_STORE_FAILED', `re-reading ${key} failed: ${messageOf(err)}; run it again to resume`, err);
        }
      }
      if (kv === undefined) {
        summary.deletedMeanwhile++;
        return;
      }
      const read = await decrypt(kv);
      if (!read) return;
      if (!read.stale) {
        summary.alreadyCurrent++;
        return;
      }
      if (attempt > maxAttempts) {
        summary.retriesExhausted.push(key);
        return;
      }
      const value = await encrypt({ kv, plaintext: read.plaintext });
      await bucket?.take(1);
      // write() answers one outcome per op.
      const outcome = (await write([{ key, value, expectedRevision: kv.modRevision }]))[0] as UpdateOutcome;
      if (outcome.ok) {
        summary.rewritten++;
        return;
      }
      if (isStoreError(outcome.error, 'NOT_FOUND')) {
        summary.deletedMeanwhile++;
        return;
      }
      if (!isStoreError(outcome.error, 'CONFLICT')) throw fail('REWRITE_STORE_FAILED', `writing ${key} failed: ${messageOf(outcome.error)}`, outcome.error);
      summary.conflictsRetried++;
      kv = outcome.error.current;
    }
  };

  /** Writes the stale values of one page (in chunks the rate allows), then retries the conflicts. */
  const writeBatch = async (pending: Pending[]): Promise<void> => {
    const chunk = bucket ? bucket.capacity : pending.length;
    const conflicts: Array<{ key: string; current: KeyValue | undefined }> = [];
    for (let i = 0; i < pending.length; i += chunk) {
      checkAbort();
      const part = pending.slice(i, i + chunk);
      const values = await mapLimit(part, TRANSFORM_CONCURRENCY, encrypt);
      const ops: UpdateOp[] = part.map((item, j) => ({ key: item.kv.key, value: values[j] as Buffer, expectedRevision: item.kv.modRevision }));
      await bucket?.take(ops.length);
      const outcomes = await write(ops);
      outcomes.forEach((outcome, j) => {
        const key = (ops[j] as UpdateOp).key;
        if (outcome.ok) summary.rewritten++;
        else if (isStoreError(outcome.error, 'NOT_FOUND')) summary.deletedMeanwhile++;
        else if (isStoreError(outcome.error, 'CONFLICT')) {
          summary.conflictsRetried++;
          conflicts.push({ key, current: outcome.error.current });
        } else throw fail('REWRITE_STORE_FAILED', `writing ${key} failed: ${messageOf(outcome.error)}; run it again to resume`, outcome.error);
      });
    }
    for (const c of conflicts) {
      checkAbort();
      await retry(c.key, c.current);
    }
  };

  const listPrefix = options.listPrefix ?? prefix + '/';
  let after: string | undefined = options.startAfter;
  let revision: number | undefined = options.revision;
  for (let batchNumber = 1; ; batchNumber++) {
    checkAbort();
    let page: ListResult;
    try {
      page = await store.list(listPrefix, { limit: batchSize, ...(after !== undefined ? { after } : {}), ...(revision !== undefined ? { revision } : {}) });
    } catch (err) {
      if (isStoreError(err, 'COMPACTED') && revision !== undefined) {
        // A long run outlived the history of its first revision (the server compacts): go on from the
        // last key at the current revision — every key after it is still looked at once.
        revision = undefined;
        batchNumber--;
        continue;
      }
      throw fail('REWRITE_STORE_FAILED', `listing ${listPrefix} failed: ${messageOf(err)}`, err);
    }
    revision = page.revision;
    if (summary.revision === 0) summary.revision = page.revision;
    const pending: Pending[] = [];
    const selected = page.items.filter((kv) => transformerOf(kv.key) !== undefined);
    const reads = await mapLimit(selected, TRANSFORM_CONCURRENCY, decrypt);
    for (const [i, kv] of selected.entries()) {
      summary.scanned++;
      const read = reads[i];
      if (!read) continue;
      if (!read.stale) {
        summary.alreadyCurrent++;
        continue;
      }
      summary.stale++;
      pending.push({ kv, plaintext: read.plaintext });
    }
    if (!dryRun && pending.length > 0) await writeBatch(pending);
    progress();
    const lastKey = page.items[page.items.length - 1]?.key;
    if (lastKey !== undefined) await options.afterBatch?.(batchNumber, { lastKey, revision: page.revision });
    if (!page.more || lastKey === undefined) break;
    after = lastKey;
  }
  return finish();
}
