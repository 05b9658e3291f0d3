// A watch on the etcd store (etcd.ts): etcd3's Watcher mapped onto WatchEvent, resumed after the
// last delivered event, and a cancelled watch explained (COMPACTED or UNAVAILABLE).
import type { IKeyValue, Watcher } from 'etcd3';
import { StoreError } from './errors.js';
import type { KeyValue, Watch, WatchEvent, WatchOptions } from './types.js';

/** etcd's answer to a read or watch below its compaction point (rpctypes.ErrCompacted). */
export const COMPACTED_MESSAGE = 'required revision has been compacted';

/** What a watch needs of its store. */
export interface WatchedEtcd {
  newWatcher(prefix: string, startRevision: number): Watcher;
  detach(w: EtcdWatch): void;
  /** Whether reading at `revision` fails because it was compacted (StoreError UNAVAILABLE when etcd cannot be asked). */
  compactedAt(revision: number): Promise<boolean>;
  compactRevisionAbove(compacted: number): Promise<number>;
}

/**
 * One watch: etcd3's Watcher (which reconnects by itself, resuming after the last revision it saw)
 * mapped onto WatchEvent. A cancelled watch is explained: COMPACTED when its next revision has been
 * compacted, else UNAVAILABLE.
 */
export class EtcdWatch implements Watch {
  private readonly watcher: Watcher;
  private closed = false;
  private nextRevision: number;

  constructor(
    private readonly store: WatchedEtcd,
    private readonly prefix: string,
    private readonly options: WatchOptions,
  ) {
    this.nextRevision = Math.max(0, options.afterRevision) + 1;
    this.watcher = store.newWatcher(prefix, this.nextRevision);
    this.watcher.on('data', (res) => {
      if (this.closed) return;
      for (const ev of res.events) {
        if (this.closed) return;
        const event = toWatchEvent(ev.type, ev.kv, ev.prev_kv);
        const rev = event.type === 'put' ? event.kv.modRevision : event.modRevision;
        this.nextRevision = rev + 1;
        this.options.onEvent(event);
      }
    });
    this.watcher.on('error', (err: Error) => void this.onCancelled(err));
    // etcd3 resumes a reconnecting watch from the revision in the last response header + 1, but etcd
    // stamps history replay batches with its *current* revision: a connection lost during catch-up
    // would skip the rest of the history. Resume after the last event delivered instead.
    this.watcher.on('disconnected', () => {
      this.watcher.request.start_revision = this.nextRevision;
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.store.detach(this);
    this.watcher.cancel().catch(() => undefined);
  }

  private async onCancelled(err: Error): Promise<void> {
    if (this.closed) return;
    let error: StoreError;
    try {
      error = (await this.store.compactedAt(this.nextRevision))
        ? new StoreError('COMPACTED', `watch of ${this.prefix} from revision ${this.nextRevision}: ${COMPACTED_MESSAGE}`, {
          cause: err,
          compactRevision: await this.store.compactRevisionAbove(this.nextRevision),
        })
        : new StoreError('UNAVAILABLE', `watch of ${this.prefix}: ${err.message}`, { cause: err });
    } catch (checkErr) {
      // etcd could not be asked whether the history is gone: a retryable failure, not a guess.
      error = new StoreError('UNAVAILABLE', `watch of ${this.prefix}: ${err.message}; checking for compaction: ${(checkErr as Error).message}`, { cause: err });
    }
    if (this.closed) return;
    this.close();
    this.options.onError(error);
  }
}

export function toKeyValue(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString('utf8'),
    value: kv.value,
    modRevision: Number(kv.mod_revision),
    createRevision: Number(kv.create_revision),
  };
}

function toWatchEvent(type: string, kv: IKeyValue, prev: IKeyValue | undefined | null): WatchEvent {
  const prevKv = prev && prev.key && prev.key.length > 0 ? toKeyValue(prev) : undefined;
  if (type === 'Delete') {
    return { type: 'delete', key: kv.key.toString('utf8'), modRevision: Number(kv.mod_revision), ...(prevKv ? { prev: prevKv } : {}) };
  }
  return { type: 'put', kv: toKeyValue(kv), ...(prevKv ? { prev: prevKv } : {}) };
}
