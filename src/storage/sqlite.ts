// The embedded store: one SQLite file (better-sqlite3, synchronous) laid out the way kine lays out
// etcd on SQL. Every write appends one row to `kv`; the row id is the global revision, so
// resourceVersion, conflicts and watch behave as on etcd:
//   - a key's state at revision R is its row with the largest id <= R (absent if that row is a tombstone);
//   - create/update/delete-at-revision read the latest row and append, inside an IMMEDIATE transaction
//     (createGuarded reads its guard key's latest row in that same transaction first);
//   - group commit: the writes called in one event-loop turn share that transaction and its one fsync
//     (see enqueue() below); each still does its own check and gets its own revision;
//   - watch = the rows with id > afterRevision, read back from the table, then fed live by the writers;
//   - compaction deletes superseded rows and tombstones at or below a revision.
// Several processes may open the file: WAL mode lets readers (`atrest get-raw`, `verify`) look while
// a server runs, and a second writer (`atrest rewrite` next to `atrest serve`) is safe because every
// write is an IMMEDIATE transaction that checks the key's latest row (compare-and-swap) and takes the
// next row id. Watchers see this process's writes at once; while any watcher exists, the store polls
// `PRAGMA data_version` (it changes only when another connection commits) every `foreignPollMs` and
// makes its watchers catch up from the table, so writes of other processes reach them too.
import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../log.js';
import { classifyDiskError, diskAdvice, refineByFreeSpace, type DiskErrorClass } from './disk-errors.js';
import { guardChanged, keyExists, StoreError } from './errors.js';
import { asBuffer, prefixEndString } from './prefix.js';
import type { CreateGuard, KeyValue, ListOptions, ListResult, Store, UpdateOp, UpdateOutcome, Watch, WatchEvent, WatchOptions } from './types.js';
import { createRevisionOf, EVENT_COLUMNS, SCHEMA, type EventRow, type LatestRow, type ListRow } from './sqlite-schema.js';
import { SqliteWatcher, type WatchedStore } from './sqlite-watch.js';
import { probeStoreFile, WriteHealth } from './write-health.js';

export { STORE_FILE_NAME } from './defaults.js';

export interface SqliteStoreOptions {
  /** Open an existing file without writing to it (tools reading a running server's store). */
  readonly?: boolean;
  /** Automatic compaction keeps at least this many revisions of history (default 1000, like kine). */
  compactKeepRevisions?: number;
  /** How often automatic compaction runs; 0 disables it (default 5 minutes). */
  compactIntervalMs?: number;
  /** `full` (default): every commit is fsynced. `normal`: a power loss may drop the last commits (a crash does not). */
  synchronous?: 'full' | 'normal';
  /** Rows read per step when a watch catches up on history (default 500). */
  watchBatchSize?: number;
  /** While watchers exist: how often to check for commits of other processes (default 100 ms). */
  foreignPollMs?: number;
  /** Warnings (compaction, other writers); absent: nothing is logged. */
  logger?: Logger;
}

/** At most this many queued writes share one transaction (a longer queue is committed in several; an updateMany is one). */
const MAX_BATCH = 1000;

/**
 * One queued write: `apply` runs inside the shared transaction and returns what `done` needs, or
 * throws a StoreError to refuse this write alone (it must have written nothing then); `done` runs
 * after the commit is durable, `fail` when the write was refused or the transaction failed.
 */
interface PendingWrite<T = unknown> {
  key: string | undefined;
  apply(): T;
  done(result: T): void;
  fail(err: Error): void;
}

/** Creates the directory (0700) and the file (0600) before SQLite does, so neither is ever wider. */
function prepareFile(file: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  closeSync(openSync(file, 'a', 0o600));
}

/** A full, read-only or failing disk behind `err` (free space checked where the file lives), else undefined. */
function diskFailureOf(err: unknown, file: string): DiskErrorClass | undefined {
  const classified = classifyDiskError(err);
  return classified && file !== ':memory:' ? refineByFreeSpace(classified, dirname(file)) : classified;
}

export function openSqliteStore(file: string, options: SqliteStoreOptions = {}): Store & SqliteStoreExtras {
  return new SqliteStore(file, options);
}

/** What the embedded store offers beyond Store. */
export interface SqliteStoreExtras {
  /** The revision compaction has removed history up to (0: none). */
  compactRevision(): number;
  compact(revision: number): Promise<void>;
  createGuarded(key: string, value: Uint8Array, guard: CreateGuard): Promise<number>;
  updateMany(ops: readonly UpdateOp[]): Promise<UpdateOutcome[]>;
}

class SqliteStore implements Store, SqliteStoreExtras, WatchedStore {
  private readonly db: Database.Database;
  private readonly readonly: boolean;
  private readonly logger: Logger | undefined;
  private readonly watchers = new Set<SqliteWatcher>();
  private readonly statements = new Map<string, Database.Statement>();
  private readonly stLatest: Database.Statement;
  private readonly stDataVersion: Database.Statement;
  readonly watchBatchSize: number;
  private compactTimer: NodeJS.Timeout | undefined;
  private readonly foreignPollMs: number;
  private foreignTimer: NodeJS.Timeout | undefined;
  private dataVersion = 0;
  private closed = false;
  private compactedTo = 0;
  /** `data_version` when compactedTo was last read from `meta`: while it holds, no other connection committed, so no other compaction. */
  private compactReadAtVersion: number | undefined;

  private readonly createRow: (key: string, value: Buffer, guard: CreateGuard | undefined) => number;
  private readonly updateRow: (key: string, value: Buffer, expected: number) => { rev: number; prev: KeyValue };
  private readonly deleteRow: (key: string, expected: number | undefined) => { rev: number; prev: KeyValue } | undefined;
  /** Runs `fn` in one IMMEDIATE transaction: committed (fsynced) when it returns, rolled back when it throws. */
  private readonly txBatch: (fn: () => void) => void;
  private readonly txCompact: (revision: number) => void;
  /** Writes waiting for the next group commit, in call order. */
  private queue: PendingWrite[] = [];
  private flushScheduled = false;
  private readonly file: string;
  /** The last lasting write failure (full, read-only, failing disk) until a batch commits again. */
  private readonly writeHealth = new WriteHealth();

  constructor(file: string, options: SqliteStoreOptions) {
    this.file = file;
    this.readonly = options.readonly ?? false;
    this.logger = options.logger;
    let db: Database.Database | undefined;
    try {
      if (file !== ':memory:' && !this.readonly) prepareFile(file);
      db = new Database(file, { readonly: this.readonly, fileMustExist: this.readonly });
      db.pragma('busy_timeout = 5000');
      if (!this.readonly) {
        db.pragma('journal_mode = WAL');
        db.pragma(`synchronous = ${options.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
        db.exec(SCHEMA);
      }
      this.db = db;
    } catch (err) {
      db?.close();
      // Opened read-only (the tools), a missing or unreadable file is a store that is not there.
      const disk = this.readonly ? undefined : diskFailureOf(err, file);
      throw new StoreError(disk?.problem ?? 'UNAVAILABLE', `cannot open the embedded store ${file}: ${disk?.cause ?? (err as Error).message}`, { cause: err });
    }
    if (this.readonly && !this.db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'kv'`).get()) {
      this.db.close();
      throw new StoreError('UNAVAILABLE', `${file} is not an atrest embedded store (no kv table)`);
    }
    this.stDataVersion = this.db.prepare('PRAGMA data_version').pluck();
    this.compactedTo = this.readCompactRevision();

    const latest = this.db.prepare('SELECT id, created, deleted, create_revision, value FROM kv WHERE name = ? ORDER BY id DESC LIMIT 1');
    this.stLatest = latest;
    const insert = this.readonly
      ? undefined
      : this.db.prepare('INSERT INTO kv (name, created, deleted, create_revision, prev_revision, value) VALUES (?, ?, ?, ?, ?, ?)');
    const run = (...args: unknown[]): number => {
      if (!insert) throw new StoreError('UNAVAILABLE', 'the embedded store was opened read-only');
      return Number(insert.run(...args).lastInsertRowid);
    };
    const live = (key: string): LatestRow | undefined => {
      const row = latest.get(key) as LatestRow | undefined;
      return row && !row.deleted ? row : undefined;
    };
    const kvOf = (key: string, row: LatestRow): KeyValue => ({ key, value: row.value, modRevision: row.id, createRevision: createRevisionOf(row) });

    // The row operations below run only inside txBatch (the group commit's transaction). A refused
    // operation throws its StoreError before inserting anything, so the others in the batch go on.
    this.createRow = (key: string, value: Buffer, guard: CreateGuard | undefined) => {
      // The guard is read in the same transaction as the create: no write can come between them.
      if (guard) {
        const g = live(guard.key);
        if (g?.id !== guard.modRevision) throw guardChanged(key, guard, g && kvOf(guard.key, g));
      }
      const row = latest.get(key) as LatestRow | undefined;
      if (row && !row.deleted) throw keyExists(key);
      return run(key, 1, 0, 0, row?.id ?? 0, value);
    };

    this.updateRow = (key: string, value: Buffer, expected: number) => {
      const row = live(key);
      if (!row) throw new StoreError('NOT_FOUND', `key ${key} not found`, { key });
      const prev = kvOf(key, row);
      if (row.id !== expected) {
        throw new StoreError('CONFLICT', `key ${key} was modified: expected revision ${expected}, current ${row.id}`, { key, current: prev });
      }
      return { rev: run(key, 0, 0, prev.createRevision, row.id, value), prev };
    };

    this.deleteRow = (key: string, expected: number | undefined) => {
      const row = live(key);
      if (!row) return undefined;
      const prev = kvOf(key, row);
      if (expected !== undefined && row.id !== expected) {
        throw new StoreError('CONFLICT', `key ${key} was modified: expected revision ${expected}, current ${row.id}`, { key, current: prev });
      }
      // The tombstone keeps the deleted value so delete events can carry it after compaction of the row before.
      return { rev: run(key, 0, 1, prev.createRevision, row.id, row.value), prev };
    };

    this.txBatch = this.db.transaction((fn: () => void) => fn()).immediate as unknown as (fn: () => void) => void;

    const dropSuperseded = this.readonly
      ? undefined
      : this.db.prepare('DELETE FROM kv WHERE id IN (SELECT prev_revision FROM kv WHERE prev_revision != 0 AND id <= ?)');
    const dropTombstones = this.readonly ? undefined : this.db.prepare('DELETE FROM kv WHERE deleted = 1 AND id <= ?');
    const setCompacted = this.readonly
      ? undefined
      : this.db.prepare(`INSERT INTO meta (name, value) VALUES ('compact_revision', ?) ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)`);
    this.txCompact = this.db.transaction((revision: number) => {
      if (!dropSuperseded || !dropTombstones || !setCompacted) throw new StoreError('UNAVAILABLE', 'the embedded store was opened read-only');
      dropSuperseded.run(revision);
      dropTombstones.run(revision);
      setCompacted.run(revision);
    }).immediate as unknown as (revision: number) => void;

    const interval = options.compactIntervalMs ?? 5 * 60_000;
    const keep = options.compactKeepRevisions ?? 1000;
    if (!this.readonly && interval > 0) {
      this.compactTimer = setInterval(() => this.autoCompact(keep), interval);
      this.compactTimer.unref();
    }
    this.watchBatchSize = options.watchBatchSize ?? 500;
    this.foreignPollMs = options.foreignPollMs ?? 100;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const row = this.guard(key, () => this.stLatest.get(key)) as LatestRow | undefined;
    if (!row || row.deleted) return undefined;
    return { key, value: row.value, modRevision: row.id, createRevision: createRevisionOf(row) };
  }

  create(key: string, value: Uint8Array): Promise<number> {
    return this.enqueueCreate(key, asBuffer(value), undefined);
  }

  /** A create that checks the guard key's revision inside its group commit's transaction (GUARD_CHANGED, then KEY_EXISTS). */
  createGuarded(key: string, value: Uint8Array, guard: CreateGuard): Promise<number> {
    return this.enqueueCreate(key, asBuffer(value), guard);
  }

  private enqueueCreate(key: string, buf: Buffer, guard: CreateGuard | undefined): Promise<number> {
    return this.enqueue<number>(key, () => this.createRow(key, buf, guard), (rev) => {
      this.publish(rev, { type: 'put', kv: { key, value: buf, modRevision: rev, createRevision: rev } });
      return rev;
    });
  }

  update(key: string, value: Uint8Array, expectedRevision: number): Promise<number> {
    const buf = asBuffer(value);
    return this.enqueue(key, () => this.updateRow(key, buf, expectedRevision), ({ rev, prev }) => {
      this.publish(rev, { type: 'put', kv: { key, value: buf, modRevision: rev, createRevision: prev.createRevision }, prev });
      return rev;
    });
  }

  /** One entry of the group commit (one transaction with whatever else is queued); a refused operation (CONFLICT, ...) comes back as its outcome. */
  updateMany(ops: readonly UpdateOp[]): Promise<UpdateOutcome[]> {
    if (ops.length === 0) return Promise.resolve([]);
    const bufs = ops.map((op) => ({ key: op.key, value: asBuffer(op.value), expectedRevision: op.expectedRevision }));
    // A refused operation wrote nothing, so the others go on in the same transaction.
    const apply = () => bufs.map((op) => {
      try {
        return this.updateRow(op.key, op.value, op.expectedRevision);
      } catch (err) {
        if (err instanceof StoreError) return err;
        throw err;
      }
    });
    return this.enqueue(undefined, apply, (results) => results.map((r, i): UpdateOutcome => {
      if (r instanceof StoreError) return { ok: false, error: r };
      const op = bufs[i]!;
      this.publish(r.rev, { type: 'put', kv: { key: op.key, value: op.value, modRevision: r.rev, createRevision: r.prev.createRevision }, prev: r.prev });
      return { ok: true, revision: r.rev };
    }));
  }

  delete(key: string, expectedRevision?: number): Promise<KeyValue | undefined> {
    return this.enqueue(key, () => this.deleteRow(key, expectedRevision), (result) => {
      if (!result) return undefined;
      this.publish(result.rev, { type: 'delete', key, modRevision: result.rev, prev: result.prev });
      return result.prev;
    });
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    return this.guard(prefix, () => {
      const current = this.currentRevision();
      const revision = options.revision && options.revision > 0 ? options.revision : current;
      if (revision > current) {
        throw new StoreError('FUTURE_REVISION', `revision ${revision} is newer than the store's current revision ${current}`);
      }
      const upper = prefixEndString(prefix);
      const after = options.after !== undefined && options.after >= prefix ? options.after : undefined;
      const lowerOp = after === undefined ? '>=' : '>';
      const sql =
        `SELECT kv.id, kv.name, kv.created, kv.create_revision, kv.value FROM kv JOIN ` +
        `(SELECT MAX(id) AS mid FROM kv WHERE name ${lowerOp} ?${upper === undefined ? '' : ' AND name < ?'} AND id <= ? GROUP BY name) m ` +
        `ON kv.id = m.mid WHERE kv.deleted = 0 ORDER BY kv.name LIMIT ?`;
      const limit = options.limit && options.limit > 0 ? options.limit : 0;
      const params: unknown[] = [after ?? prefix];
      if (upper !== undefined) params.push(upper);
      params.push(revision, limit > 0 ? limit + 1 : -1);
      const rows = this.stmt(`list${lowerOp}${upper === undefined ? '' : '<'}`, sql).all(...params) as ListRow[];
      this.checkNotCompacted(revision);
      const more = limit > 0 && rows.length > limit;
      if (more) rows.length = limit;
      const items = rows.map((r) => ({ key: r.name, value: r.value, modRevision: r.id, createRevision: createRevisionOf(r) }));
      return { items, revision, more };
    });
  }

  watch(prefix: string, options: WatchOptions): Watch {
    const watcher = new SqliteWatcher(this, prefix, options);
    if (this.closed) {
      watcher.fail(new StoreError('UNAVAILABLE', 'the embedded store is closed'));
      return watcher;
    }
    this.watchers.add(watcher);
    this.startForeignPoll();
    watcher.start();
    return watcher;
  }

  async revision(): Promise<number> {
    return this.guard(undefined, () => this.currentRevision());
  }

  async compact(revision: number): Promise<void> {
    this.guard(undefined, () => {
      const current = this.currentRevision();
      if (revision > current) {
        throw new StoreError('FUTURE_REVISION', `cannot compact at revision ${revision}: the store is at ${current}`);
      }
      // compactRevision() re-reads it: another process may have compacted further (never go back).
      if (revision <= this.compactRevision()) return;
      this.txCompact(revision);
      this.compactedTo = revision; // our own commit leaves data_version as it is: the cache stays valid
    });
  }

  compactRevision(): number {
    // Another process may have compacted (a server next to a tool): read it back from `meta`, but
    // only when some other connection has committed since the last read (every list page asks).
    // data_version is read first, so a compaction committed in between is caught by the next call.
    if (this.closed) return this.compactedTo;
    const version = this.readDataVersion();
    if (version !== this.compactReadAtVersion) {
      this.compactedTo = Math.max(this.compactedTo, this.readCompactRevision());
      this.compactReadAtVersion = version;
    }
    return this.compactedTo;
  }

  async ping(): Promise<void> {
    this.guard(undefined, () => this.stmt('ping', 'SELECT 1').get());
  }

  async writable(): Promise<void> {
    if (this.closed) throw new StoreError('UNAVAILABLE', 'the embedded store is closed');
    if (this.readonly) throw new StoreError('READ_ONLY', `the embedded store ${this.file} was opened read-only`);
    await this.writeHealth.check(() => (this.file === ':memory:' ? Promise.resolve() : probeStoreFile(this.file)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Writes already asked for are committed (or fail) before the file closes, never dropped.
    this.flush();
    this.closed = true;
    if (this.compactTimer) clearInterval(this.compactTimer);
    this.stopForeignPoll();
    for (const w of this.watchers) w.close();
    this.watchers.clear();
    this.db.close();
  }

  // ---- internals used by SqliteWatcher ----

  /** Raw event rows with id in (after, upTo] for keys under `prefix`, oldest first. */
  readEvents(prefix: string, after: number, upTo: number, limit: number): EventRow[] {
    const upper = prefixEndString(prefix);
    const sql =
      `SELECT ${EVENT_COLUMNS} FROM kv LEFT JOIN kv p ON p.id = kv.prev_revision ` +
      `WHERE kv.id > ? AND kv.id <= ? AND kv.name >= ?${upper === undefined ? '' : ' AND kv.name < ?'} ORDER BY kv.id LIMIT ?`;
    const params: unknown[] = [after, upTo, prefix];
    if (upper !== undefined) params.push(upper);
    params.push(limit);
    return this.stmt(`events${upper === undefined ? '' : '<'}`, sql).all(...params) as EventRow[];
  }

  currentRevision(): number {
    const row = this.stmt('revision', `SELECT seq FROM sqlite_sequence WHERE name = 'kv'`).get() as { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  detach(watcher: SqliteWatcher): void {
    this.watchers.delete(watcher);
    if (this.watchers.size === 0) this.stopForeignPoll();
  }

  isClosed(): boolean {
    return this.closed;
  }

  /**
   * COMPACTED when `revision` is below the compaction point. Asked after the rows were read: another
   * process's compaction deletes rows and moves the point in one commit, so rows read after that
   * commit (some of them missing) are always followed by a check that sees it.
   */
  private checkNotCompacted(revision: number): void {
    const compacted = this.compactRevision();
    if (revision < compacted) {
      throw new StoreError('COMPACTED', `revision ${revision} has been compacted (history starts after ${compacted})`, {
        compactRevision: compacted,
      });
    }
  }

  private readCompactRevision(): number {
    const row = this.stmt('compact-revision', `SELECT value FROM meta WHERE name = 'compact_revision'`).get() as { value: number } | undefined;
    return row?.value ?? 0;
  }

  /** `PRAGMA data_version`: changes whenever another connection (another process) commits to the file. */
  private readDataVersion(): number {
    return this.stDataVersion.get() as number;
  }

  private startForeignPoll(): void {
    if (this.foreignTimer || this.closed || this.foreignPollMs <= 0) return;
    this.dataVersion = this.readDataVersion();
    this.foreignTimer = setInterval(() => this.pollForeign(), this.foreignPollMs);
    this.foreignTimer.unref();
  }

  private stopForeignPoll(): void {
    if (this.foreignTimer) clearInterval(this.foreignTimer);
    this.foreignTimer = undefined;
  }

  /** Another process committed: every watcher reads the rows after its cursor from the table. */
  private pollForeign(): void {
    if (this.closed) return;
    let version: number;
    try {
      version = this.readDataVersion();
    } catch (err) {
      this.logger?.warn({ err: (err as Error).message }, 'embedded store: checking for other writers failed');
      return;
    }
    if (version === this.dataVersion) return;
    this.dataVersion = version;
    for (const w of this.watchers) w.catchUp();
  }

  private autoCompact(keep: number): void {
    if (this.closed) return;
    const target = this.currentRevision() - keep;
    if (target <= this.compactedTo) return;
    this.compact(target).then(
      () => this.logger?.debug({ revision: target }, 'compacted the embedded store'),
      (err: unknown) => this.logger?.warn({ err: (err as Error).message }, 'compaction of the embedded store failed'),
    );
  }

  /**
   * Group commit. A write is queued and the queue is committed on the next turn of the event loop
   * (setImmediate: after the I/O callbacks of this turn, so requests that arrived together share it),
   * all queued writes in one IMMEDIATE transaction, in call order. Guarantees, as with one
   * transaction per write:
   *   - durability: a write's promise resolves only after COMMIT has returned, and with WAL and
   *     synchronous=FULL (the default) COMMIT returns after the WAL is fsynced; so nothing is
   *     acknowledged that a crash or power loss can take back (`normal`: a crash cannot);
   *   - revisions and CAS: each write reads the key's latest row inside the transaction (seeing the
   *     writes before it in the batch and every commit of other processes, which IMMEDIATE locks
   *     out meanwhile) and takes the next row id, so the outcome is that of running them one by one;
   *   - a refused write (KEY_EXISTS, CONFLICT, NOT_FOUND) wrote nothing and fails alone; any other
   *     error rolls the whole transaction back and fails every write in it (UNAVAILABLE), none of
   *     which was acknowledged. Watch events are published after the commit, in revision order.
   * better-sqlite3 is synchronous, so the commit's fsync still blocks the event loop, but once per
   * batch instead of once per write.
   */
  private enqueue<T, R = T>(key: string | undefined, apply: () => T, after: (result: T) => R): Promise<R> {
    if (this.closed) return Promise.reject(new StoreError('UNAVAILABLE', 'the embedded store is closed', { key }));
    if (this.readonly) return Promise.reject(new StoreError('UNAVAILABLE', 'the embedded store was opened read-only', { key }));
    return new Promise<R>((resolve, reject) => {
      const write: PendingWrite<T> = {
        key,
        apply,
        done: (result) => {
          try {
            resolve(after(result));
          } catch (err) {
            reject(err as Error);
          }
        },
        fail: reject,
      };
      this.queue.push(write as PendingWrite);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits every queued write (in transactions of at most MAX_BATCH), then settles their promises. */
  private flush(): void {
    this.flushScheduled = false;
    while (this.queue.length > 0) {
      const batch = this.queue.length <= MAX_BATCH ? this.queue : this.queue.slice(0, MAX_BATCH);
      this.queue = this.queue.length <= MAX_BATCH ? [] : this.queue.slice(MAX_BATCH);
      const results: Array<{ ok: true; value: unknown } | { ok: false; error: StoreError }> = [];
      try {
        if (this.closed) throw new StoreError('UNAVAILABLE', 'the embedded store is closed');
        this.txBatch(() => {
          for (const w of batch) {
            try {
              results.push({ ok: true, value: w.apply() });
            } catch (err) {
              if (!(err instanceof StoreError)) throw err;
              results.push({ ok: false, error: err });
            }
          }
        });
      } catch (err) {
        // One look at the disk (a statfs on I/O errors) for the whole batch, not one per write.
        const disk = err instanceof StoreError ? undefined : diskFailureOf(err, this.file);
        this.writeHealth.record(this.unavailable(undefined, err, disk));
        for (const w of batch) w.fail(this.unavailable(w.key, err, disk));
        continue;
      }
      this.writeHealth.succeeded();
      batch.forEach((w, i) => {
        const r = results[i]!;
        if (r.ok) w.done(r.value);
        else w.fail(r.error);
      });
    }
  }

  private publish(rev: number, event: WatchEvent): void {
    for (const w of this.watchers) w.notify(rev, event);
  }

  private stmt(name: string, sql: string): Database.Statement {
    let s = this.statements.get(name);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(name, s);
    }
    return s;
  }

  /** Runs `fn`, turning SQLite and closed-store failures into StoreError UNAVAILABLE naming `key`. */
  private guard<T>(key: string | undefined, fn: () => T): T {
    if (this.closed) throw new StoreError('UNAVAILABLE', 'the embedded store is closed', { key });
    try {
      return fn();
    } catch (err) {
      throw this.unavailable(key, err);
    }
  }

  /**
   * A StoreError as is; a disk that is full, read-only or failing as NO_SPACE / READ_ONLY / IO_ERROR
   * (lasting: not worth a retry); anything else (SQLite) as StoreError UNAVAILABLE naming `key`.
   */
  private unavailable(key: string | undefined, err: unknown, disk = err instanceof StoreError ? undefined : diskFailureOf(err, this.file)): StoreError {
    if (err instanceof StoreError) return err;
    const where = key === undefined ? '' : ` (key ${key})`;
    if (disk) return new StoreError(disk.problem, `the embedded store ${this.file} failed${where}: ${disk.cause}. To fix: ${diskAdvice(disk.problem, dirname(this.file))}`, { key, cause: err });
    return new StoreError('UNAVAILABLE', `embedded store error${where}: ${(err as Error).message}`, { key, cause: err });
  }
}
