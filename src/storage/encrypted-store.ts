// A Store seen through the at-rest transformers: what the API server reads and writes. Every value is
// passed through the transformer of its key with the full storage key as authenticated data, so a
// value moved to another key fails to decrypt. Writes fail closed: if encryption fails nothing is
// written. A value that fails to decrypt is reported with its key, never taking the caller down.
import type { HealthCheck } from '../health.js';
import type { ReadOrigin, Transformer } from '../transform/types.js';
import { StoredValueTransformError, StoreError } from './errors.js';
import type { CreateGuard, KeyValue, ListOptions, Store, UpdateOp, UpdateOutcome, Watch, WatchEvent } from './types.js';

/** A stored value and its plaintext. */
export interface DecryptedValue {
  kv: KeyValue;
  plaintext: Buffer;
  /** Not written by the current write provider/key: rewrite it on its next update. */
  stale: boolean;
  origin: ReadOrigin;
  error?: undefined;
}

/** A stored value its transformer could not read (`list` with `onError: 'collect'`). */
export interface UndecryptableValue {
  kv: KeyValue;
  error: StoredValueTransformError;
  plaintext?: undefined;
}

export type ListedValue = DecryptedValue | UndecryptableValue;

export interface EncryptedListOptions extends ListOptions {
  /** `throw` (default): the first undecryptable value fails the list. `collect`: it is returned as an UndecryptableValue in its place. */
  onError?: 'throw' | 'collect';
}

export interface EncryptedListResult<T extends ListedValue = DecryptedValue> {
  /** In key order; the last item's `kv.key` is the continuation point. */
  items: T[];
  revision: number;
  more: boolean;
}

export type DecryptedWatchEvent =
  | { type: 'put'; key: string; revision: number; value: DecryptedValue; prev?: DecryptedValue }
  /** `prev` is the deleted value (absent when the backend no longer had it). */
  | { type: 'delete'; key: string; revision: number; prev?: DecryptedValue };

export interface EncryptedWatchOptions {
  afterRevision: number;
  onEvent(event: DecryptedWatchEvent): void;
  /** Terminal: the watch is closed (StoreError COMPACTED/UNAVAILABLE, or a decryption error when `onDecryptError` is absent). */
  onError(err: Error): void;
  /**
   * Called for an event whose value cannot be decrypted; the watch goes on. Without it such an
   * event ends the watch through onError.
   */
  onDecryptError?(err: StoredValueTransformError, event: WatchEvent): void;
  /** Also decrypt the previous value of put events (default false: only deletes carry `prev`). */
  decryptPrevOnPut?: boolean;
}

export interface EncryptedStoreOptions {
  /** How many values of one list are decrypted at once (default 16). */
  listConcurrency?: number;
}

export class EncryptedStore {
  private readonly listConcurrency: number;

  constructor(
    /** The raw store underneath (tools such as rewrite and get-raw use it directly). */
    readonly store: Store,
    private readonly transformerFor: (key: string) => Transformer,
    options: EncryptedStoreOptions = {},
  ) {
    this.listConcurrency = Math.max(1, options.listConcurrency ?? 16);
  }

  /** Decrypts one stored value; throws StoredValueTransformError naming its key. */
  async decrypt(kv: KeyValue): Promise<DecryptedValue> {
    let result;
    try {
      result = await this.transformerFor(kv.key).fromStorage(kv.value, Buffer.from(kv.key));
    } catch (err) {
      throw new StoredValueTransformError(kv.key, 'read', err);
    }
    return { kv, plaintext: result.plaintext, stale: result.stale, origin: result.origin };
  }

  /** The stored bytes for `plaintext` at `key`; throws StoredValueTransformError naming the key. */
  async encrypt(key: string, plaintext: Uint8Array): Promise<Buffer> {
    try {
      return await this.transformerFor(key).toStorage(plaintext, Buffer.from(key));
    } catch (err) {
      throw new StoredValueTransformError(key, 'write', err);
    }
  }

  async get(key: string): Promise<DecryptedValue | undefined> {
    const kv = await this.store.get(key);
    return kv ? this.decrypt(kv) : undefined;
  }

  /** Encrypts and creates; StoreError KEY_EXISTS as Store.create. Returns the new revision. */
  async create(key: string, plaintext: Uint8Array): Promise<number> {
    const stored = await this.encrypt(key, plaintext);
    return this.store.create(key, stored);
  }

  /** Whether the backend can create under a guard key in one step (Store.createGuarded: both real backends). */
  get canGuardCreates(): boolean {
    return typeof this.store.createGuarded === 'function';
  }

  /** Encrypts and creates while `guard` holds (Store.createGuarded); throws if the backend cannot. */
  async createGuarded(key: string, plaintext: Uint8Array, guard: CreateGuard): Promise<number> {
    if (!this.store.createGuarded) throw new StoreError('UNAVAILABLE', 'this store cannot create under a guard key', { key });
    const stored = await this.encrypt(key, plaintext);
    return this.store.createGuarded(key, stored, guard);
  }

  /** Encrypts and replaces at `expectedRevision`; StoreError CONFLICT (current is the raw KeyValue: see decrypt) or NOT_FOUND. */
  async update(key: string, plaintext: Uint8Array, expectedRevision: number): Promise<number> {
    const stored = await this.encrypt(key, plaintext);
    return this.store.update(key, stored, expectedRevision);
  }

  /**
   * Encrypts and applies several independent update-if-revision operations (bulk re-encryption),
   * outcomes in the order of `ops`. An operation whose encryption fails is not written (its outcome
   * is the StoredValueTransformError); the others still are. Uses Store.updateMany when the backend
   * has it (one transaction on the embedded store), else updates one by one.
   */
  async updateMany(ops: ReadonlyArray<{ key: string; plaintext: Uint8Array; expectedRevision: number }>): Promise<UpdateOutcome[]> {
    const outcomes = new Array<UpdateOutcome>(ops.length);
    const encrypted: Array<{ pos: number; write: UpdateOp }> = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < ops.length) {
        const i = next++;
        const op = ops[i] as (typeof ops)[number];
        try {
          const value = await this.encrypt(op.key, op.plaintext);
          encrypted.push({ pos: i, write: { key: op.key, value, expectedRevision: op.expectedRevision } });
        } catch (err) {
          outcomes[i] = { ok: false, error: err as Error };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.listConcurrency, ops.length) }, worker));
    // Written in the order given, whatever order the encryptions finished in.
    encrypted.sort((a, b) => a.pos - b.pos);
    const writes = encrypted.map((e) => e.write);
    let results: UpdateOutcome[];
    if (this.store.updateMany) {
      results = await this.store.updateMany(writes);
    } else {
      results = [];
      for (const w of writes) {
        try {
          results.push({ ok: true, revision: await this.store.update(w.key, w.value, w.expectedRevision) });
        } catch (err) {
          results.push({ ok: false, error: err as Error });
        }
      }
    }
    results.forEach((r, j) => {
      outcomes[(encrypted[j] as (typeof encrypted)[number]).pos] = r;
    });
    return outcomes;
  }

  /** Deletes without decrypting, so a value that no longer decrypts can still be removed. Returns the raw deleted KeyValue. */
  delete(key: string, expectedRevision?: number): Promise<KeyValue | undefined> {
    return this.store.delete(key, expectedRevision);
  }

  list(prefix: string, options?: EncryptedListOptions & { onError?: 'throw' }): Promise<EncryptedListResult<DecryptedValue>>;
  list(prefix: string, options: EncryptedListOptions & { onError: 'collect' }): Promise<EncryptedListResult<ListedValue>>;
  async list(prefix: string, options: EncryptedListOptions = {}): Promise<EncryptedListResult<ListedValue>> {
    const { onError = 'throw', ...listOptions } = options;
    const raw = await this.store.list(prefix, listOptions);
    const items = new Array<ListedValue>(raw.items.length);
    let next = 0;
    let failed = false;
    const worker = async (): Promise<void> => {
      while (!failed && next < raw.items.length) {
        const i = next++;
        const kv = raw.items[i] as KeyValue;
        try {
          items[i] = await this.decrypt(kv);
        } catch (err) {
          if (onError === 'throw' || !(err instanceof StoredValueTransformError)) {
            failed = true; // the other workers stop too: the list is failing anyway
            throw err;
          }
          items[i] = { kv, error: err };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.listConcurrency, raw.items.length) }, worker));
    return { items, revision: raw.revision, more: raw.more };
  }

  /** Watches keys under `prefix`, decrypting each event in order. */
  watch(prefix: string, options: EncryptedWatchOptions): Watch {
    let closed = false;
    // Decryption is asynchronous; chaining keeps the events in revision order.
    let chain: Promise<void> = Promise.resolve();
    const inner = this.store.watch(prefix, {
      afterRevision: options.afterRevision,
      onEvent: (event) => {
        chain = chain.then(async () => {
          if (closed) return;
          let decrypted: DecryptedWatchEvent;
          try {
            decrypted = await this.decryptEvent(event, options.decryptPrevOnPut ?? false);
          } catch (err) {
            if (closed) return;
            const e = err instanceof StoredValueTransformError ? err : new StoredValueTransformError(keyOf(event), 'read', err);
            if (options.onDecryptError) {
              options.onDecryptError(e, event);
              return;
            }
            watch.close();
            options.onError(e);
            return;
          }
          if (!closed) options.onEvent(decrypted);
        });
      },
      onError: (err) => {
        chain = chain.then(() => {
          if (closed) return;
          closed = true;
          options.onError(err);
        });
      },
    });
    const watch: Watch = {
      close: () => {
        if (closed) return;
        closed = true;
        inner.close();
      },
    };
    return watch;
  }

  revision(): Promise<number> {
    return this.store.revision();
  }

  ping(): Promise<void> {
    return this.store.ping();
  }

  private async decryptEvent(event: WatchEvent, decryptPrevOnPut: boolean): Promise<DecryptedWatchEvent> {
    if (event.type === 'delete') {
      const prev = event.prev ? await this.decrypt(event.prev) : undefined;
      return { type: 'delete', key: event.key, revision: event.modRevision, ...(prev ? { prev } : {}) };
    }
    const value = await this.decrypt(event.kv);
    const prev = decryptPrevOnPut && event.prev ? await this.decrypt(event.prev) : undefined;
    return { type: 'put', key: event.kv.key, revision: event.kv.modRevision, value, ...(prev ? { prev } : {}) };
  }
}

function keyOf(event: WatchEvent): string {
  return event.type === 'put' ? event.kv.key : event.key;
}

/** The store's readiness check, under kube-apiserver's name `etcd` (for both backends). */
export function storeHealthCheck(store: Store | EncryptedStore): HealthCheck {
  return {
    name: 'etcd',
    check: () => store.ping(),
  };
}

/**
 * Whether the store can write (a full, read-only or failing disk; etcd's NOSPACE alarm): kube has no
 * such check; a server that answers reads but must refuse every write is not ready for traffic.
 */
export function storeWritableCheck(store: Store): HealthCheck {
  return {
    name: 'storage-writable',
    check: () => store.writable?.() ?? Promise.resolve(),
  };
}
