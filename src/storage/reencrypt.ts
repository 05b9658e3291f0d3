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
// Values whose KMS plugin cannot be reached are "not read" (checked-read.ts), never undecryptable;
// values the plugin refuses because their KEK version is retired are counted apart (needsRetiredKey:
// not lost, restore the version), never as undecryptable either.
// With `recheckOtherWrites`, values another writer put there during the run are checked once after
// the pass: stale ones mean an API server still writes with an old key (issue #20, rotation).
// Never logs or returns a value.
import { AtrestError, messageOf } from '../errors.js';
import type { GroupResource } from '../config/types.js';
import { CheckedReader, type NotChecked, type ReadOutcome } from './checked-read.js';
import { DEFAULT_REWRITE_BATCH_SIZE } from './defaults.js';
import { isStoreError } from './errors.js';
import { normalizePrefix, parseStorageKey } from './keys.js';
import { OwnRevisions } from './own-revisions.js';
import { listScanPage } from './scan.js';
import { realSleep, TokenBucket } from './token-bucket.js';
import type { KeyValue, ListResult, Store, UpdateOp, UpdateOutcome } from './types.js';
import type { TransformerSet, TransformResult } from '../transform/types.js';

/** Attempts per key after CONFLICTs before the key is reported as still changing. */
export const DEFAULT_REWRITE_MAX_ATTEMPTS = 5;

export type RewriteErrorCode =
  /** A stale value could not be encrypted with the write provider: the run stopped, nothing of that value was written. */
  | 'REWRITE_ENCRYPT_FAILED'
  /** The store failed (not a per-key CONFLICT / NOT_FOUND): the run stopped; rerun to resume. */
  | 'REWRITE_STORE_FAILED'
  /** The run was aborted (signal): rerun to resume. */
  | 'REWRITE_ABORTED'
  /** A value could not be read because its KMS plugin (or the store) was unreachable, with `stopWhenUnchecked`. */
  | 'REWRITE_UNCHECKED';

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
  needsRetiredKey: number;
}

export interface RewriteSummary extends RewriteCounts {
  /** The revision the first page was listed at. */
  revision: number;
  dryRun: boolean;
  /** Values that do not decrypt with the configuration (keys only, never values). */
  undecryptable: Array<{ key: string; error: string }>;
  /** Values the KMS plugin refused because the KEK version they need is retired: not lost, not rewritten; restore the version. */
  needsRetiredKey: Array<{ key: string; error: string }>;
  /** Keys still changing after the retry limit: still stale, rerun to finish them. */
  retriesExhausted: string[];
  /** Values that could not be read because their KMS plugin could not be reached (not known to be lost), by cause. */
  notChecked: NotChecked[];
  /**
   * Stale values another writer stored during the run (after `revision`), with `recheckOtherWrites`:
   * an API server still writes with an old key or provider, so the run does not leave everything
   * current. Keys only.
   */
  staleWrittenMeanwhile: string[];
  /** kms v2 write providers whose key_id changed while the run went on: what it rewrote before is stale again. */
  keyChanged: Array<{ provider: string; from: string; to: string }>;
  durationMs: number;
  /** Every selected value was read. */
  complete: boolean;
  /** Complete, and every selected value ended current (dry run: nothing undecryptable). */
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
  /** Reads through this (it knows the kms providers and which are down); default: one without kms providers. */
  reader?: CheckedReader;
  /**
   * Stop (RewriteError REWRITE_UNCHECKED) at the first value that cannot be read because its KMS
   * plugin or the store is unreachable, instead of counting it and going on: a background migration
   * pauses and retries rather than wait out a KMS timeout per value.
   */
  stopWhenUnchecked?: boolean;
  /** After the pass, look once more at values other writers stored during the run (not with dryRun). */
  recheckOtherWrites?: boolean;
  /**
   * The key_id hash each kms v2 write provider writes with, asked fresh (a Status call, past the
   * probe cache): compared at the start and the end to notice a rotation that landed mid-run.
   */
  keyIds?(): Promise<Map<string, string | undefined>>;
  signal?: AbortSignal;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}


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


/** A page as listed, its selected values, and their reads (in the order of `selected`). */
interface FetchedPage {
  page: ListResult;
  selected: KeyValue[];
  reads: ReadOutcome[];
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

  const reader = options.reader ?? new CheckedReader();
  const summary: RewriteSummary = {
    revision: 0, dryRun, scanned: 0, stale: 0, rewritten: 0, alreadyCurrent: 0, conflictsRetried: 0,
    deletedMeanwhile: 0, undecryptable: [], needsRetiredKey: [], retriesExhausted: [], notChecked: [], staleWrittenMeanwhile: [], keyChanged: [],
    durationMs: 0, complete: false, ok: false,
  };
  const finish = (): RewriteSummary => {
    summary.durationMs = now() - started;
    const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    summary.undecryptable.sort(byKey);
    summary.needsRetiredKey.sort(byKey);
    summary.notChecked = reader.notChecked();
    summary.complete = summary.notChecked.length === 0;
    summary.ok = summary.complete && summary.undecryptable.length === 0 && summary.needsRetiredKey.length === 0 && summary.retriesExhausted.length === 0
      && summary.staleWrittenMeanwhile.length === 0 && summary.keyChanged.length === 0;
    return summary;
  };
  /** The revisions of this run's own writes (etcd: one per transaction; embedded: one per key, consecutive). */
  const own = new OwnRevisions();
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
  /**
   * Decrypts; what does not decrypt is an outcome (`error`), counted by whoever uses the read. A value
   * not read because its KMS plugin is unreachable is counted by the reader (notChecked), never as
   * undecryptable; with stopWhenUnchecked it stops the run.
   */
  const read = async (kv: KeyValue): Promise<ReadOutcome> => {
    const transformer = transformerOf(kv.key);
    if (!transformer) return { kind: 'undecryptable', error: 'the key is not of a selected resource' };
    const outcome = await reader.read(transformer, kv.key, kv.value);
    if (outcome.kind === 'unchecked' && options.stopWhenUnchecked) throw fail('REWRITE_UNCHECKED', `cannot read ${kv.key}: ${outcome.cause}; nothing of it was written`);
    return outcome;
  };
  /** Counts a failed read: undecryptable, or needing a retired KEK version; one not checked the reader counts (notChecked). */
  const countFailure = (kv: KeyValue, r: Exclude<ReadOutcome, { kind: 'read' }>): void => {
    if (r.kind === 'needs-retired-key') summary.needsRetiredKey.push({ key: kv.key, error: r.error });
    else if (r.kind === 'undecryptable') summary.undecryptable.push({ key: kv.key, error: r.error });
  };
  /** Decrypts; undefined (and counted) when it does not decrypt. */
  const decrypt = async (kv: KeyValue): Promise<TransformResult | undefined> => {
    const r = await read(kv);
    if (r.kind === 'read') return r.result;
    countFailure(kv, r);
    return undefined;
  };
  const write = async (ops: UpdateOp[]): Promise<UpdateOutcome[]> => {
    try {
      if (store.updateMany) {
        const outcomes = await store.updateMany(ops);
        if (outcomes.length !== ops.length) throw new Error(`the store answered ${outcomes.length} outcomes for ${ops.length} writes`);
        own.add(outcomes);
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
      own.add(outcomes);
      return outcomes;
    } catch (err) {
      throw fail('REWRITE_STORE_FAILED', `writing to the store failed: ${messageOf(err)}; run it again to resume`, err);
    }
  };
  const progress = () =>
    options.onProgress?.({
      scanned: summary.scanned, stale: summary.stale, rewritten: summary.rewritten, alreadyCurrent: summary.alreadyCurrent,
      conflictsRetried: summary.conflictsRetried, deletedMeanwhile: summary.deletedMeanwhile, undecryptable: summary.undecryptable.length,
      needsRetiredKey: summary.needsRetiredKey.length,
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
  /**
   * One page listed and decrypted (nothing counted yet). Listed at `revision` — a long run that
   * outlived that revision's history (the server compacts) goes on from the same key at the current
   * revision: every key after it is still looked at once.
   */
  const fetchPage = async (after: string | undefined, revision: number | undefined): Promise<FetchedPage> => {
    let page: ListResult;
    try {
      page = await listScanPage(store, listPrefix, { limit: batchSize, ...(after !== undefined ? { after } : {}), ...(revision !== undefined ? { revision } : {}) });
    } catch (err) {
      throw fail('REWRITE_STORE_FAILED', `listing ${listPrefix} failed: ${messageOf(err)}`, err);
    }
    const selected = page.items.filter((kv) => transformerOf(kv.key) !== undefined);
    return { page, selected, reads: await mapLimit(selected, TRANSFORM_CONCURRENCY, read) };
  };

  // The next page is listed and decrypted while this one is written (reads at a fixed revision do not
  // see the writes): the store's round trips and the CPU work overlap. A fetch is awaited on the next
  // turn; one that fails after the run stopped must not be an unhandled rejection.
  const prefetch = (after: string | undefined, revision: number | undefined): Promise<FetchedPage> => {
    const p = fetchPage(after, revision);
    p.catch(() => {});
    return p;
  };
  const recheck = !dryRun && (options.recheckOtherWrites ?? false);
  const keysAtStart = recheck ? await options.keyIds?.() : undefined;
  let next: Promise<FetchedPage> | undefined = prefetch(options.startAfter, options.revision);
  for (let batchNumber = 1; next; batchNumber++) {
    const fetched: Promise<FetchedPage> = next;
    next = undefined;
    checkAbort();
    const { page, selected, reads } = await fetched;
    if (summary.revision === 0) summary.revision = page.revision;
    const lastKey = page.items[page.items.length - 1]?.key;
    if (page.more && lastKey !== undefined) next = prefetch(lastKey, page.revision);
    const pending: Pending[] = [];
    for (const [i, kv] of selected.entries()) {
      summary.scanned++;
      const r = reads[i] as ReadOutcome;
      if (r.kind !== 'read') {
        countFailure(kv, r);
        continue;
      }
      if (!r.result.stale) {
        summary.alreadyCurrent++;
        continue;
      }
      summary.stale++;
      pending.push({ kv, plaintext: r.result.plaintext });
    }
    if (!dryRun && pending.length > 0) await writeBatch(pending);
    progress();
    if (lastKey !== undefined) await options.afterBatch?.(batchNumber, { lastKey, revision: page.revision });
  }
  if (recheck) {
    // The key_ids first: a fresh Status also moves this run's own write state to a new key_id, so
    // the values checked next are judged against the key the servers should now write with.
    if (keysAtStart && options.keyIds) {
      for (const [provider, to] of await options.keyIds()) {
        const from = keysAtStart.get(provider);
        if (from !== undefined && to !== undefined && from !== to) summary.keyChanged.push({ provider, from, to });
      }
    }
    await checkWrittenMeanwhile();
  }
  return finish();

  /**
   * Looks once more at every selected value another writer stored after the run's first revision
   * (not one of this run's writes): a stale one means a writer — an API server that has not picked up
   * the new key_id yet — undoes the rewrite behind its back. One more list of the range (no
   * decryption of this run's own values), skipped when no other write happened.
   */
  async function checkWrittenMeanwhile(): Promise<void> {
    // Every revision since the first list is one of this run's own writes: nobody else wrote, skip the pass.
    try {
      if ((await store.revision()) - summary.revision === own.count()) return;
    } catch (err) {
      throw fail('REWRITE_STORE_FAILED', `reading the store's revision failed: ${messageOf(err)}`, err);
    }
    let from: string | undefined;
    for (;;) {
      checkAbort();
      let page: ListResult;
      try {
        page = await store.list(listPrefix, { limit: batchSize, ...(from !== undefined ? { after: from } : {}) });
      } catch (err) {
        throw fail('REWRITE_STORE_FAILED', `listing ${listPrefix} for values written during the run failed: ${messageOf(err)}`, err);
      }
      const changed = page.items.filter((kv) => kv.modRevision > summary.revision && !own.has(kv.modRevision) && transformerOf(kv.key) !== undefined);
      const reads = await mapLimit(changed, TRANSFORM_CONCURRENCY, decrypt);
      changed.forEach((kv, i) => {
        if (reads[i]?.stale) summary.staleWrittenMeanwhile.push(kv.key);
      });
      if (!page.more || page.items.length === 0) return;
      from = page.items[page.items.length - 1]?.key;
    }
  }
}
