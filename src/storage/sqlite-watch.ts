// A watch on the embedded store (sqlite.ts): the rows after a cursor read back from the table in
// batches, then the writers' events taken as they are published, in revision order either way.
import { StoreError } from './errors.js';
import { createRevisionOf, type EventRow } from './sqlite-schema.js';
import type { KeyValue, Watch, WatchEvent, WatchOptions } from './types.js';

/** What a watcher needs of its store. */
export interface WatchedStore {
  readonly watchBatchSize: number;
  /** Raw event rows with id in (after, upTo] for keys under `prefix`, oldest first. */
  readEvents(prefix: string, after: number, upTo: number, limit: number): EventRow[];
  currentRevision(): number;
  /** The revision compaction has removed history up to (0: none). */
  compactRevision(): number;
  detach(watcher: SqliteWatcher): void;
  isClosed(): boolean;
}

/**
 * One watch on the embedded store. `cursor` is the last revision it has looked at. While it is
 * level with the writers (cursor = revision - 1 when a write is published) it takes the writer's
 * event directly; otherwise (just started, or behind) it reads the rows after its cursor from the
 * table in batches. Either way events reach the caller in revision order, on a later tick than the
 * write, never inside the writer's call.
 */
export class SqliteWatcher implements Watch {
  private cursor: number;
  private readonly queue: WatchEvent[] = [];
  private needRead = true;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly store: WatchedStore,
    private readonly prefix: string,
    private readonly options: WatchOptions,
  ) {
    this.cursor = Math.max(0, options.afterRevision);
  }

  start(): void {
    this.schedule();
  }

  notify(rev: number, event: WatchEvent): void {
    if (this.closed) return;
    if (!this.needRead && this.cursor === rev - 1) {
      this.cursor = rev;
      const key = event.type === 'put' ? event.kv.key : event.key;
      if (!key.startsWith(this.prefix)) return;
      this.queue.push(event);
    } else {
      this.needRead = true;
    }
    this.schedule();
  }

  /** Rows may exist that no notify() announced (another process wrote them): read the table. */
  catchUp(): void {
    if (this.closed) return;
    this.needRead = true;
    this.schedule();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.store.detach(this);
  }

  fail(err: Error): void {
    if (this.closed) return;
    this.close();
    setImmediate(() => this.options.onError(err));
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => this.step());
  }

  private step(): void {
    this.scheduled = false;
    if (this.closed) return;
    if (this.store.isClosed()) {
      this.close();
      return;
    }
    if (this.needRead) {
      try {
        this.readBatch();
      } catch (err) {
        this.fail(err instanceof StoreError ? err : new StoreError('UNAVAILABLE', `embedded store watch of ${this.prefix}: ${(err as Error).message}`, { cause: err }));
        return;
      }
    }
    const events = this.queue.splice(0);
    for (const ev of events) {
      if (this.closed) return;
      this.options.onEvent(ev);
    }
    if (this.needRead) this.schedule();
  }

  private readBatch(): void {
    const upTo = this.store.currentRevision();
    const limit = this.store.watchBatchSize;
    const rows = this.store.readEvents(this.prefix, this.cursor, upTo, limit);
    // Checked after the read (see checkNotCompacted): rows read after a compaction by another
    // process, with events missing, are never delivered.
    const compacted = this.store.compactRevision();
    if (this.cursor < compacted) {
      this.fail(
        new StoreError('COMPACTED', `watch of ${this.prefix} from revision ${this.cursor + 1}: history before ${compacted} has been compacted`, {
          compactRevision: compacted,
        }),
      );
      return;
    }
    for (const row of rows) this.queue.push(eventOf(row));
    if (rows.length === limit) {
      this.cursor = (rows[rows.length - 1] as EventRow).id;
    } else {
      // Everything up to upTo has been read: from here on the writers' events arrive in order.
      this.cursor = Math.max(this.cursor, upTo);
      this.needRead = false;
    }
  }
}

function eventOf(row: EventRow): WatchEvent {
  const createRevision = createRevisionOf(row);
  if (row.deleted) {
    return {
      type: 'delete',
      key: row.name,
      modRevision: row.id,
      prev: { key: row.name, value: row.value, modRevision: row.prev_revision, createRevision },
    };
  }
  const kv: KeyValue = { key: row.name, value: row.value, modRevision: row.id, createRevision };
  if (row.created || row.prev_id === null || row.prev_deleted || row.prev_value === null) return { type: 'put', kv };
  const prev: KeyValue = {
    key: row.name,
    value: row.prev_value,
    modRevision: row.prev_id,
    createRevision: row.prev_created ? row.prev_id : (row.prev_create_revision ?? 0),
  };
  return { type: 'put', kv, prev };
}
