// One StorageVersionMigration, start to finish (or to the next stop): set status.resourceVersion
// (the store's revision: what kube's resource-version controller records), mark it Running, re-encrypt
// every stored object of spec.resource with the current write provider through the engine `atrest
// rewrite` uses (src/storage/reencrypt.ts: compare-and-swap writes, a conflicting client write never
// overwritten, re-read and rewritten only if still stale), persisting the progress after every
// batch, then Succeeded or Failed with kube's reasons. A run stopped by a lost lease, a shutdown or a
// crash resumes after the last key it recorded; one that cannot write (the KMS plugin down, the store
// unavailable) is retried later and stays Running.
//
// "Succeeded" means: every object of the resource that existed at status.resourceVersion has been
// read and is now written by the current write provider (re-encrypted by the migration, found
// current, rewritten by a client meanwhile) or was deleted. Objects that cannot be decrypted fail the
// migration (after the others are migrated), naming their keys: kube's migrator fails on an object it
// cannot update too, and a rotation must not retire a key that such an object may still need.
// Objects the KMS plugin refuses because their KEK version is retired fail it too, with the advice
// to restore that version (they are not lost), never to delete them.
import { groupResourceString } from '../../config/group-resource.js';
import { messageOf } from '../../errors.js';
import {
  findCondition, isFinished, MIGRATION_REASONS, migrationResource, setCondition, statusOf,
} from '../../k8s-objects/storage-version-migration.js';
import type { KubeObject } from '../../k8s-objects/object-model.js';
import { storagePrefix } from '../../storage/keys.js';
import { RewriteError, rewriteStore, type RewriteSummary } from '../../storage/reencrypt.js';
import type { MigrationMetrics } from './metrics.js';
import { addCounts, countsOf, describeCounts, readProgress, subtractCounts, writeProgress, ZERO_COUNTS, type MigrationCounts } from './progress.js';
import type { MigrationControllerOptions } from './types.js';

/** The abort reason the controller gives a run whose object its watch saw deleted. */
export const MIGRATION_DELETED = 'storage version migration deleted';

/** `done`: finished or nothing to do; `retry`: try again later; `stopped`: the run was stopped (lease lost, shutdown). */
export type RunResult = 'done' | 'retry' | 'stopped';

/** Keys named in a Failed message at most (the rest are counted; the log has them all). */
const MAX_KEYS_IN_MESSAGE = 10;
/** A progress log line at most this often. */
const LOG_EVERY_MS = 5000;

function keyList(keys: string[]): string {
  const shown = keys.slice(0, MAX_KEYS_IN_MESSAGE).join(', ');
  return keys.length > MAX_KEYS_IN_MESSAGE ? `${shown} and ${keys.length - MAX_KEYS_IN_MESSAGE} more` : shown;
}

/**
 * Records progress off the migration's critical path: one write at a time, and a snapshot that was
 * not written yet is replaced by a newer one. The recorded position is always that of a batch whose
 * writes are done, so at a crash it is at most the last batch or two behind.
 */
class ProgressWriter {
  private next: ((o: KubeObject) => void) | undefined;
  private running: Promise<void> | undefined;

  constructor(
    /** Writes; false when the object is gone. */
    private readonly write: (mutate: (o: KubeObject) => void) => Promise<boolean>,
    private readonly onGone: () => void,
    private readonly onError: (err: unknown) => void,
  ) {}

  push(mutate: (o: KubeObject) => void): void {
    this.next = mutate;
    this.running ??= this.loop();
  }

  private async loop(): Promise<void> {
    while (this.next) {
      const mutate = this.next;
      this.next = undefined;
      try {
        if (!(await this.write(mutate))) this.onGone();
      } catch (err) {
        this.onError(err);
      }
    }
    this.running = undefined;
  }

  /** Resolves when everything pushed is written. */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }
}

/** kube's failMigration message. */
const unhandled = (detail: string): string => `migration encountered unhandled error: ${detail}`;

export class MigrationRunner {
  private readonly now: () => number;

  constructor(
    private readonly options: MigrationControllerOptions,
    private readonly metrics: MigrationMetrics,
  ) {
    this.now = options.now ?? Date.now;
  }

  async run(name: string, signal: AbortSignal): Promise<RunResult> {
    const { objects, log } = this.options;
    let obj = await objects.get(name);
    if (!obj || isFinished(obj)) return 'done';
    const uid = obj.metadata.uid ?? '';
    const gr = migrationResource(obj);
    const resource = groupResourceString(gr); // gr.resource is a validated DNS-1035 label, never `*`
    if (!this.options.serves(gr)) {
      log.warn({ migration: name, resource }, 'storage version migration failed: the resource is not served');
      await this.finish(name, uid, resource, 'Failed', unhandled('unable to obtain GVR from discovery'));
      return 'done';
    }
    if (!statusOf(obj)['resourceVersion']) {
      const revision = await this.options.store.revision();
      obj = await objects.update(name, uid, (o) => { statusOf(o)['resourceVersion'] = String(revision); });
      if (!obj) return 'done';
    }
    const startRevision = Number(statusOf(obj)['resourceVersion']);
    const progress = readProgress(obj);
    const base: MigrationCounts = { ...ZERO_COUNTS, ...progress };
    const resumeAfter = progress.continue;
    const listPrefix = storagePrefix(this.options.etcdPrefix, gr.resource);
    const runningMessage = (counts: MigrationCounts) => `migrating ${resource}: ${describeCounts(counts)}`;
    obj = await objects.update(name, uid, (o) => {
      setCondition(o, { type: 'Running', status: 'True', reason: MIGRATION_REASONS.Running, message: runningMessage(base) }, this.now());
    });
    if (!obj) return 'done';
    log.info({ migration: name, resource, startRevision, ...(resumeAfter !== undefined ? { resumeAfter, ...base } : {}) },
      resumeAfter !== undefined ? 'storage version migration resumed' : 'storage version migration started');

    // The run stops when the lease is lost or the server stops (signal), or when the object is deleted.
    const local = new AbortController();
    const onAbort = () => local.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) local.abort();
    let gone = false;
    let runCounts = ZERO_COUNTS;
    let reported = ZERO_COUNTS;
    let lastLog = this.now();
    const report = () => {
      this.metrics.objects(resource, subtractCounts(runCounts, reported));
      reported = runCounts;
    };
    const progressWriter = new ProgressWriter(
      async (mutate) => (await objects.update(name, uid, mutate)) !== undefined,
      () => {
        gone = true;
        local.abort();
      },
      (err) => log.warn({ migration: name, err: messageOf(err) }, 'storage version migration: could not record progress'),
    );
    this.metrics.running(resource, 1);
    let summary: RewriteSummary;
    try {
      summary = await rewriteStore({
        store: this.options.store,
        transformers: this.options.transformers,
        etcdPrefix: this.options.etcdPrefix,
        selects: (g) => g.group === gr.group && g.resource === gr.resource,
        listPrefix,
        ...(resumeAfter !== undefined ? { startAfter: listPrefix + resumeAfter } : {}),
        revision: progress.revision ?? startRevision,
        ...(this.options.batchSize ? { batchSize: this.options.batchSize } : {}),
        ...(this.options.rate ? { rate: this.options.rate } : {}),
        signal: local.signal,
        // A KMS plugin that cannot be reached says nothing about the values: pause and retry (below),
        // never count them as undecryptable (which fails the migration and tells operators to delete).
        stopWhenUnchecked: true,
        onProgress: (p) => { runCounts = countsOf((k) => p[k]); },
        afterBatch: (_batch, position) => {
          report();
          const total = addCounts(base, runCounts);
          progressWriter.push((o) => {
            writeProgress(o, { ...total, continue: position.lastKey.slice(listPrefix.length), revision: position.revision });
            setCondition(o, { type: 'Running', status: 'True', reason: MIGRATION_REASONS.Running, message: runningMessage(total) }, this.now());
          });
          if (this.now() - lastLog >= LOG_EVERY_MS) {
            lastLog = this.now();
            log.info({ migration: name, resource, ...total }, 'storage version migration progress');
          }
        },
      });
    } catch (err) {
      report();
      await progressWriter.flush();
      if (err instanceof RewriteError && err.code === 'REWRITE_ABORTED') {
        // The object was deleted: seen by a progress write (gone), or by the controller's watch (the
        // signal's reason); else the lease was lost or the server stops.
        const deleted = gone || signal.reason === MIGRATION_DELETED;
        log.info({ migration: name, resource }, deleted ? 'storage version migration deleted while running' : 'storage version migration stopped; it resumes where it stopped');
        return deleted ? 'done' : 'stopped';
      }
      // The write provider cannot encrypt or a value cannot be read (KMS plugin down), the store
      // fails: nothing was written wrongly (fail closed); stay Running and try again later from the
      // last recorded batch.
      log.warn({ migration: name, resource, err: messageOf(err) }, 'storage version migration paused; retrying later');
      await objects.update(name, uid, (o) => {
        const total = addCounts(base, runCounts);
        setCondition(o, { type: 'Running', status: 'True', reason: MIGRATION_REASONS.Running, message: `${runningMessage(total)}; waiting to retry: ${messageOf(err)}` }, this.now());
      }).catch((e: unknown) => log.warn({ migration: name, err: messageOf(e) }, 'could not record the retry on the StorageVersionMigration'));
      return 'retry';
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.metrics.running(resource, -1);
    }
    report();
    await progressWriter.flush();
    if (gone) return 'done';
    const final: MigrationCounts = { ...summary, undecryptable: summary.undecryptable.length, needsRetiredKey: summary.needsRetiredKey.length };
    const total = addCounts(base, countsOf((k) => final[k]));
    for (const u of summary.undecryptable) log.warn({ migration: name, key: u.key, err: u.error }, 'storage version migration: a stored object cannot be decrypted');
    for (const u of summary.needsRetiredKey) log.warn({ migration: name, key: u.key, err: u.error }, 'storage version migration: a stored object needs a retired KEK version');
    const failures: string[] = [];
    if (total.needsRetiredKey > 0) {
      const keys = summary.needsRetiredKey.map((u) => u.key);
      // The plugin's refusal names the key_id and the restore command; one is enough (a backup usually brings back one version).
      const first = summary.needsRetiredKey[0]?.error;
      failures.push(`${total.needsRetiredKey} stored objects of ${resource} need a retired KEK version` +
        (keys.length ? `: ${keyList(keys)}` : ' (found before a restart: see the log)') +
        '; they are not lost: restore the KEK version (atrest kms-plugin restore-key; atrest verify lists them with the command), then create a new StorageVersionMigration' +
        (first ? `. The KMS plugin said: ${first}` : ''));
    }
    if (total.undecryptable > 0) {
      const keys = summary.undecryptable.map((u) => u.key);
      failures.push(`${total.undecryptable} stored objects of ${resource} cannot be decrypted with this server's encryption configuration` +
        (keys.length ? `: ${keyList(keys)}` : ' (found before a restart: see the log)') +
        '; restore the key they were written with, or delete them (atrest verify lists them), then create a new StorageVersionMigration');
    }
    let failure: string | undefined = failures.length ? unhandled(failures.join('; and ')) : undefined;
    if (failure === undefined && summary.retriesExhausted.length > 0) {
      failure = unhandled(`${summary.retriesExhausted.length} objects were written with a stale provider again and again during the migration ` +
        `(an API server with an older encryption configuration?): ${keyList(summary.retriesExhausted)}; create a new StorageVersionMigration once every server has the same configuration`);
    }
    const done = await this.finish(name, uid, resource, failure ? 'Failed' : 'Succeeded', failure ?? describeCounts(total), total);
    if (done) log.info({ migration: name, resource, result: failure ? 'Failed' : 'Succeeded', ...total }, failure ? 'storage version migration failed' : 'storage version migration succeeded');
    return 'done';
  }

  /** Running → False and Succeeded or Failed → True (kube's setStatusConditions), with the final counts. */
  private async finish(name: string, uid: string, resource: string, type: 'Succeeded' | 'Failed', message: string, counts?: MigrationCounts): Promise<KubeObject | undefined> {
    const written = await this.options.objects.update(name, uid, (o) => {
      const running = findCondition(o, 'Running');
      if (running) setCondition(o, { type: 'Running', status: 'False', reason: running.reason, message: running.message }, this.now());
      setCondition(o, { type, status: 'True', reason: MIGRATION_REASONS[type], message }, this.now());
      if (counts) writeProgress(o, { ...counts });
    });
    if (written) this.metrics.finished(resource, type === 'Succeeded' ? 'succeeded' : 'failed');
    return written;
  }
}

