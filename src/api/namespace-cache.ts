// The namespaces as this server last saw them, fed by a list and then a watch of the store (what
// kube-apiserver's NamespaceLifecycle admission reads from its namespace informer), so that a create
// does not read its namespace from etcd first. Because it is fed by the store's watch, namespaces
// created, changed or deleted through another `atrest serve` on the same etcd reach it too.
//
// The race bound. A watch-fed cache lags the store by the watch delivery time (normally
// milliseconds; unbounded while the watch is broken, when the cache is dropped and every lookup
// goes to the store until it has listed again). kube-apiserver accepts that lag: a create racing
// a namespace deletion may land in a namespace that is already Terminating, and the namespace
// controller deletes it later. Here the lag cannot let such a create through: the cache hands out
// the namespace's revision, and the create is one etcd transaction that applies only while the
// namespace key is still at that revision (Store.createGuarded). When the namespace moved (marked
// Terminating, deleted, recreated, relabelled) the transaction fails, the namespace is read live
// and the create answers exactly as it would have without a cache: 404 NotFound for a missing
// namespace, 403 Forbidden for a Terminating one, or it goes again at the new revision. A cache
// miss (a namespace created elsewhere a moment ago) is a live read too. So the cache changes the
// number of store calls per create (one instead of two: on etcd a network round trip), never an
// answer.
//
// Both backends guard creates (the embedded store checks the guard inside its group commit's
// transaction; other processes writing the same file reach the cache through the store's
// data_version poll). A store without createGuarded gets no cache: without the guard the cache
// would open the race window above.
import type { Logger } from '../log.js';
import type { Watch } from '../storage/types.js';
import { corruptObjectOf } from './corrupt-objects.js';
import type { ObjectRepository, ObjectWatchEvent } from './object-repository.js';
import { namespaces } from './resource-types.js';

/** A namespace as the cache saw it. */
export interface CachedNamespace {
  /** The namespace's modRevision (the guard of creates in it). */
  revision: number;
  /** It has a deletionTimestamp (Terminating): no new content. */
  terminating: boolean;
}

/** What creates read: the namespace as last seen, or undefined (then the store is asked). */
export interface NamespaceLookup {
  get(name: string): CachedNamespace | undefined;
}

export interface NamespaceCacheOptions {
  /** Wait before listing again after a failed list or a broken watch (default 1000 ms). */
  resyncDelayMs?: number;
}

const LIST_PAGE = 500;

export class NamespaceCache implements NamespaceLookup {
  private entries = new Map<string, CachedNamespace>();
  private synced = false;
  private watch: Watch | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly resyncDelayMs: number;
  private syncing: Promise<void> | undefined;

  constructor(
    private readonly repo: ObjectRepository,
    private readonly log: Logger,
    options: NamespaceCacheOptions = {},
  ) {
    this.resyncDelayMs = options.resyncDelayMs ?? 1000;
  }

  /** Lists the namespaces and starts watching; resolves once the first attempt ended (synced or not). */
  start(): Promise<void> {
    return (this.syncing ??= this.sync().finally(() => (this.syncing = undefined)));
  }

  /** Whether the cache holds the store's namespaces (listed, and the watch unbroken since). */
  get isSynced(): boolean {
    return this.synced;
  }

  /** The namespace as last seen; undefined when unknown here or the cache is not synced (ask the store). */
  get(name: string): CachedNamespace | undefined {
    return this.synced ? this.entries.get(name) : undefined;
  }

  close(): void {
    this.closed = true;
    this.synced = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.watch?.close();
    this.watch = undefined;
    this.entries.clear();
  }

  private async sync(): Promise<void> {
    if (this.closed) return;
    try {
      const entries = new Map<string, CachedNamespace>();
      let revision: number | undefined;
      let after: string | undefined;
      for (;;) {
        // A namespace that does not decrypt or decode is left out (the live path reports it): one
        // broken value must not keep the whole cache from syncing.
        const page = await this.repo.list(namespaces, undefined, {
          limit: LIST_PAGE,
          collectCorrupt: true,
          ...(after !== undefined ? { after } : {}),
          ...(revision !== undefined ? { revision } : {}),
        });
        revision ??= page.revision;
        for (const item of page.items) {
          entries.set(item.obj.metadata.name ?? '', { revision: item.revision, terminating: Boolean(item.obj.metadata.deletionTimestamp) });
        }
        if (!page.more || page.lastKey === undefined) break;
        after = page.lastKey;
      }
      if (this.closed) return;
      this.entries = entries;
      this.watch = this.repo.watch(namespaces, undefined, revision, {
        onEvent: (e) => this.apply(e),
        onError: (err) => {
          const corrupt = corruptObjectOf(err);
          if (corrupt) this.forget(corrupt.key);
          else this.broken(err);
        },
        onDecryptError: (err) => this.forget(err.key),
      });
      this.synced = true;
    } catch (err) {
      this.broken(err);
    }
  }

  private apply(e: ObjectWatchEvent): void {
    if (e.type === 'put') {
      this.entries.set(e.obj.metadata.name ?? '', { revision: e.revision, terminating: Boolean(e.obj.metadata.deletionTimestamp) });
    } else if (e.obj) {
      this.entries.delete(e.obj.metadata.name ?? '');
    } else {
      // A delete without the old value names no namespace: start over rather than keep a stale entry.
      this.broken(new Error('a namespace delete event without its previous value'));
    }
  }

  /** A namespace whose stored value cannot be decrypted or decoded is left to the live path (which reports it). */
  private forget(key: string): void {
    this.entries.delete(key.slice(key.lastIndexOf('/') + 1));
  }

  private broken(err: unknown): void {
    if (this.closed) return;
    this.synced = false;
    this.entries.clear();
    this.watch?.close();
    this.watch = undefined;
    this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'namespace cache: listing again; namespaces are read from the store meanwhile');
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.start();
    }, this.resyncDelayMs);
    this.timer.unref();
  }
}
