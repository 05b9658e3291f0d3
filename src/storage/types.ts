// The narrow key-value interface with revisions that the API server and the tools need (etcd v3's
// model; kine shows it is enough). Backends: etcd (src/storage/etcd) and embedded SQLite
// (src/storage/sqlite). Values here are the raw stored bytes; EncryptedStore adds the transformers.

export interface KeyValue {
  key: string;
  value: Buffer;
  /** Revision of the last change to this key (etcd mod_revision; the object's resourceVersion). */
  modRevision: number;
  createRevision: number;
}

export interface ListOptions {
  /** At most this many items (0 or undefined: all). */
  limit?: number;
  /** Continue strictly after this key (the last key of the previous page). */
  after?: string;
  /** Read at this revision (consistent pagination); undefined: the current revision. */
  revision?: number;
}

export interface ListResult {
  items: KeyValue[];
  /** The store revision the list was read at. */
  revision: number;
  /** More items exist after the last one returned. */
  more: boolean;
}

export type WatchEvent =
  | { type: 'put'; kv: KeyValue; prev?: KeyValue }
  | { type: 'delete'; key: string; modRevision: number; prev?: KeyValue };

export interface Watch {
  close(): void;
}

export interface WatchOptions {
  /** Deliver events with revision > afterRevision (events already compacted: onError with StoreError COMPACTED). */
  afterRevision: number;
  onEvent(event: WatchEvent): void;
  onError(err: Error): void;
}

/** One operation of `Store.updateMany`: update `key` to `value` only at `expectedRevision`. */
export interface UpdateOp {
  key: string;
  value: Uint8Array;
  expectedRevision: number;
}

/** The result of one UpdateOp: its new revision, or the StoreError (CONFLICT, NOT_FOUND, ...) it failed with. */
export type UpdateOutcome = { ok: true; revision: number } | { ok: false; error: Error };

/** The condition of `Store.createGuarded`: another key that must still be at `modRevision`. */
export interface CreateGuard {
  key: string;
  /** The guard key's modRevision as the caller last saw it (> 0: the key exists). */
  modRevision: number;
}

export interface Store {
  get(key: string): Promise<KeyValue | undefined>;
  /** Creates `key`; throws StoreError `KEY_EXISTS` if it exists. Returns the new revision. */
  create(key: string, value: Uint8Array): Promise<number>;
  /**
   * Creates `key` only while `guard.key` is still at `guard.modRevision`, in one atomic step (one
   * etcd transaction; on the embedded store, inside the group commit's transaction: the API server
   * creates an object only in the namespace revision it checked). Throws StoreError `GUARD_CHANGED`
   * when the guard key moved (checked first), `KEY_EXISTS` when `key` exists. Optional: a backend
   * without it gets a separate check.
   */
  createGuarded?(key: string, value: Uint8Array, guard: CreateGuard): Promise<number>;
  /**
   * Replaces `key` only if its modRevision is `expectedRevision`; throws StoreError `CONFLICT`
   * (with the current KeyValue when there is one) or `NOT_FOUND`. Returns the new revision.
   */
  update(key: string, value: Uint8Array, expectedRevision: number): Promise<number>;
  /**
   * Several independent update-if-revision operations (bulk re-encryption): each succeeds or fails
   * on its own, and the outcomes come back in the order of `ops`. The embedded store applies them in
   * one transaction (one fsync); etcd runs them concurrently. Optional so that fakes need not have it.
   */
  updateMany?(ops: readonly UpdateOp[]): Promise<UpdateOutcome[]>;
  /** Deletes `key` (only at `expectedRevision` when given). Returns the deleted KeyValue, or undefined. */
  delete(key: string, expectedRevision?: number): Promise<KeyValue | undefined>;
  /** Keys starting with `prefix`, in byte order. */
  list(prefix: string, options?: ListOptions): Promise<ListResult>;
  /** Watches keys starting with `prefix`. */
  watch(prefix: string, options: WatchOptions): Watch;
  /** The store's current revision. */
  revision(): Promise<number>;
  /**
   * Drops the history at and before `revision` (the latest value of each live key is kept): a later
   * watch or list asking for an older revision gets StoreError `COMPACTED`. Optional so that test
   * fakes need not implement it; both real backends do.
   */
  compact?(revision: number): Promise<void>;
  /** Resolves when the backend answers (the `etcd` health check). */
  ping(): Promise<void>;
  /**
   * Resolves when the store can take writes, else rejects with the StoreError that says why
   * (NO_SPACE, READ_ONLY, IO_ERROR): its last lasting write failure, or what a cheap probe finds
   * (the `storage-writable` readiness check). Optional so that fakes need not have it.
   */
  writable?(): Promise<void>;
  close(): Promise<void>;
}
