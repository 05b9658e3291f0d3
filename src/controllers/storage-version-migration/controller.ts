// The StorageVersionMigration controller of `atrest serve`: every replica runs one; the one holding
// the Lease `kube-system/atrest-storage-version-migrator` (src/controllers/leader-election.ts) lists
// and watches the StorageVersionMigrations and runs the unfinished ones one at a time
// (migrate.ts); the others wait to take the Lease over. Losing the Lease, or stop(), aborts the
// running migration after its current batch; its recorded progress lets the next leader resume it.
import { messageOf } from '../../errors.js';
import { isFinished } from '../../k8s-objects/storage-version-migration.js';
import { storageKey } from '../../storage/keys.js';
import type { Watch } from '../../storage/types.js';
import { LeaderElector } from '../leader-election.js';
import { createMigrationMetrics } from './metrics.js';
import { MIGRATION_DELETED, MigrationRunner } from './migrate.js';
import type { MigrationControllerOptions } from './types.js';

export const MIGRATOR_LEASE = { namespace: 'kube-system', name: 'atrest-storage-version-migrator' } as const;

/** A full list again this often, in case a watch event was missed. */
const RESYNC_MS = 30_000;
/** The first wait before a paused migration is tried again; doubles up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 2_000;
const MAX_BACKOFF_MS = 60_000;

export class StorageVersionMigrationController {
  private readonly runner: MigrationRunner;
  private elector?: LeaderElector;
  private standalone?: { abort: AbortController; done: Promise<void> };

  constructor(private readonly options: MigrationControllerOptions) {
    this.runner = new MigrationRunner(options, createMigrationMetrics(options.registry));
  }

  start(): void {
    const { leaderElection } = this.options;
    if (leaderElection === false) {
      const abort = new AbortController();
      this.standalone = { abort, done: this.lead(abort.signal) };
      return;
    }
    this.elector = new LeaderElector({
      ...leaderElection,
      store: this.options.encryptedStore,
      key: storageKey(this.options.etcdPrefix, 'leases', MIGRATOR_LEASE.namespace, MIGRATOR_LEASE.name),
      ...MIGRATOR_LEASE,
      ...(this.options.identity ? { identity: this.options.identity } : {}),
      log: this.options.log,
      registry: this.options.registry,
      onStartedLeading: (signal) => this.lead(signal),
      ...(this.options.now ? { now: this.options.now } : {}),
    });
    this.elector.start();
  }

  /** Stops the running migration after its current batch (its progress recorded), then releases the Lease. */
  async stop(): Promise<void> {
    if (this.standalone) {
      this.standalone.abort.abort();
      await this.standalone.done;
    }
    await this.elector?.stop();
  }

  /** The leader's work until `signal` aborts. */
  private async lead(signal: AbortSignal): Promise<void> {
    const { objects, log } = this.options;
    const now = this.options.now ?? Date.now;
    /** Names to run, with the time they may run from. */
    const queue = new Map<string, number>();
    const backoff = new Map<string, number>();
    let wake: () => void = () => {};
    const enqueue = (name: string): void => {
      if (!queue.has(name)) queue.set(name, now());
      wake();
    };
    let current: { name: string; abort: AbortController } | undefined;
    let watch: Watch | undefined;
    let timer: NodeJS.Timeout | undefined;

    const sync = async (): Promise<void> => {
      if (signal.aborted) return;
      watch?.close();
      watch = undefined;
      try {
        const { items, revision } = await objects.list();
        for (const o of items) if (o.metadata.name && !isFinished(o)) enqueue(o.metadata.name);
        watch = objects.watch(revision, {
          onEvent: (e) => {
            if (e.type === 'put') {
              if (e.obj.metadata.name && !isFinished(e.obj)) enqueue(e.obj.metadata.name);
            } else {
              queue.delete(e.name);
              if (current?.name === e.name) current.abort.abort(MIGRATION_DELETED);
            }
          },
          onError: (err) => {
            log.debug({ err: messageOf(err) }, 'storage version migration controller: watch ended; listing again');
            schedule(1000);
          },
        });
      } catch (err) {
        log.warn({ err: messageOf(err) }, 'storage version migration controller: could not list the StorageVersionMigrations');
        schedule(FIRST_BACKOFF_MS);
        return;
      }
      schedule(RESYNC_MS);
    };
    const schedule = (ms: number): void => {
      if (timer) clearTimeout(timer);
      if (signal.aborted) return;
      timer = setTimeout(() => void sync(), ms);
      timer.unref();
    };
    const onAbort = (): void => {
      current?.abort.abort();
      wake();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    log.info('storage version migration controller started');
    await sync();
    try {
      while (!signal.aborted) {
        let next: string | undefined;
        let dueIn = Infinity;
        for (const [name, at] of queue) {
          const wait = at - now();
          if (wait < dueIn) {
            dueIn = wait;
            next = name;
          }
        }
        if (next === undefined || dueIn > 0) {
          await new Promise<void>((resolve) => {
            const t = Number.isFinite(dueIn) ? setTimeout(resolve, dueIn) : undefined;
            wake = () => {
              if (t) clearTimeout(t);
              resolve();
            };
          });
          wake = () => {};
          continue;
        }
        queue.delete(next);
        const abort = new AbortController();
        current = { name: next, abort };
        if (signal.aborted) abort.abort();
        let result: 'done' | 'retry' | 'stopped';
        try {
          result = await this.runner.run(next, abort.signal);
        } catch (err) {
          log.warn({ migration: next, err: messageOf(err) }, 'storage version migration failed to run; retrying later');
          result = 'retry';
        }
        current = undefined;
        // Its own status writes queued it again meanwhile: that costs one read (it is finished, or
        // another object of that name now); a retry waits out its backoff instead.
        if (result === 'retry') {
          const wait = Math.min(MAX_BACKOFF_MS, backoff.get(next) ?? FIRST_BACKOFF_MS);
          backoff.set(next, wait * 2);
          queue.set(next, now() + wait);
        } else {
          backoff.delete(next);
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (timer) clearTimeout(timer);
      watch?.close();
      log.info('storage version migration controller stopped');
    }
  }
}
