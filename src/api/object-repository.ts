// Kubernetes objects over the EncryptedStore: JSON in, JSON out, at kube's keys
// `<prefix>/<resource>/<namespace>/<name>` (`<prefix>/namespaces/<name>`). resourceVersion is the
// key's modRevision and is not stored in the value (kube clears it before writing too).
import type { DecryptedValue, DecryptedWatchEvent, EncryptedStore, ListedValue } from '../storage/encrypted-store.js';
import { storageKey, storagePrefix } from '../storage/keys.js';
import type { Watch } from '../storage/types.js';
import type { StoredValueTransformError } from '../storage/errors.js';
import { corruptObjectOf, UndecodableObjectError, type CorruptObject } from './corrupt-objects.js';
import { isPlainObject, type KubeObject } from './objects.js';
import { decodeProtobufObject, isProtobufObject } from './protobuf.js';
import type { ResourceType } from './resource-types.js';

export interface StoredObject {
  obj: KubeObject;
  revision: number;
  /** The stored value was not written by the current write provider: rewrite even when unchanged. */
  stale: boolean;
  /** The plaintext as stored, to detect no-op updates. */
  plaintext: Buffer;
}

export interface ListPage {
  items: StoredObject[];
  revision: number;
  more: boolean;
  /** The key of the last item read, relative to the list prefix (continuation point). */
  lastKey?: string;
  /** With `collectCorrupt`: the values of the page that do not decrypt or decode (not in `items`). */
  corrupt: CorruptObject[];
}

/** What is stored under one name, read without failing on a value that does not decrypt. */
export type ReadOutcome =
  | { state: 'missing' }
  | { state: 'ok'; stored: StoredObject }
  | { state: 'corrupt'; corrupt: CorruptObject; revision: number };

export type ObjectWatchEvent =
  | { type: 'put'; revision: number; obj: KubeObject; prev?: KubeObject }
  | { type: 'delete'; revision: number; obj?: KubeObject };

export class ObjectRepository {
  constructor(
    private readonly store: EncryptedStore,
    readonly etcdPrefix: string,
  ) {}

  key(rt: ResourceType, namespace: string | undefined, name: string): string {
    return storageKey(this.etcdPrefix, rt.resource, rt.namespaced ? namespace : undefined, name);
  }

  prefix(rt: ResourceType, namespace: string | undefined): string {
    return storagePrefix(this.etcdPrefix, rt.resource, rt.namespaced ? namespace : undefined);
  }

  /** The bytes stored for `obj`: JSON, kind and apiVersion first, without resourceVersion. */
  serialize(rt: ResourceType, obj: KubeObject): Buffer {
    const { apiVersion: _a, kind: _k, metadata, ...rest } = obj;
    const { resourceVersion: _rv, ...meta } = metadata;
    return Buffer.from(JSON.stringify({ kind: rt.kind, apiVersion: rt.apiVersion, metadata: meta, ...rest }), 'utf8');
  }

  private decode(rt: ResourceType, dv: DecryptedValue): StoredObject {
    let parsed: unknown;
    try {
      // kube-apiserver stores protobuf by default: values it wrote are read too (and written back as JSON).
      parsed = isProtobufObject(dv.plaintext) ? decodeProtobufObject(dv.plaintext) : JSON.parse(dv.plaintext.toString('utf8'));
    } catch {
      parsed = undefined;
    }
    // Anything that is neither a JSON object nor a protobuf object of this kind: an Internal error
    // naming the key, like a value that fails to decrypt.
    if (!isPlainObject(parsed)) throw new UndecodableObjectError(dv.kv.key, 'is not a JSON object', rt.resource);
    const obj = parsed as unknown as KubeObject;
    obj.kind = rt.kind;
    obj.apiVersion = rt.apiVersion;
    if (!isPlainObject(obj.metadata)) obj.metadata = {};
    obj.metadata.resourceVersion = String(dv.kv.modRevision);
    return { obj, revision: dv.kv.modRevision, stale: dv.stale, plaintext: dv.plaintext };
  }

  async get(rt: ResourceType, namespace: string | undefined, name: string): Promise<StoredObject | undefined> {
    const dv = await this.store.get(this.key(rt, namespace, name));
    return dv ? this.decode(rt, dv) : undefined;
  }

  /**
   * Like get, but a value that does not decrypt or decode is an outcome, not an error (the unsafe
   * delete of KEP-3926 needs to know it is corrupt, and at which revision, without reading it).
   */
  async read(rt: ResourceType, namespace: string | undefined, name: string): Promise<ReadOutcome> {
    const kv = await this.store.store.get(this.key(rt, namespace, name));
    if (!kv) return { state: 'missing' };
    try {
      return { state: 'ok', stored: this.decode(rt, await this.store.decrypt(kv)) };
    } catch (err) {
      const corrupt = corruptObjectOf(err);
      if (!corrupt) throw err;
      return { state: 'corrupt', corrupt, revision: kv.modRevision };
    }
  }

  /** Creates; StoreError KEY_EXISTS when the name is taken. Returns the object with its resourceVersion. */
  async create(rt: ResourceType, obj: KubeObject): Promise<KubeObject> {
    const rev = await this.store.create(this.key(rt, obj.metadata.namespace, obj.metadata.name ?? ''), this.serialize(rt, obj));
    return withRevision(obj, rev);
  }

  /** Whether creates can be guarded by another key's revision in one step (the etcd backend). */
  get canGuardCreates(): boolean {
    return this.store.canGuardCreates;
  }

  /** Creates while `guardKey` is at `guardRevision`; StoreError GUARD_CHANGED / KEY_EXISTS. */
  async createGuarded(rt: ResourceType, obj: KubeObject, guardKey: string, guardRevision: number): Promise<KubeObject> {
    const key = this.key(rt, obj.metadata.namespace, obj.metadata.name ?? '');
    const rev = await this.store.createGuarded(key, this.serialize(rt, obj), { key: guardKey, modRevision: guardRevision });
    return withRevision(obj, rev);
  }

  /** Replaces at `expectedRevision`; StoreError CONFLICT / NOT_FOUND. */
  async update(rt: ResourceType, obj: KubeObject, expectedRevision: number): Promise<KubeObject> {
    const rev = await this.store.update(this.key(rt, obj.metadata.namespace, obj.metadata.name ?? ''), this.serialize(rt, obj), expectedRevision);
    return withRevision(obj, rev);
  }

  /** Deletes (at `expectedRevision` when given); returns the deletion revision, or undefined when absent. */
  async delete(rt: ResourceType, namespace: string | undefined, name: string, expectedRevision?: number): Promise<number | undefined> {
    const kv = await this.store.delete(this.key(rt, namespace, name), expectedRevision);
    if (!kv) return undefined;
    return this.store.revision();
  }

  /** Whether any value is stored under the kind's prefix in `namespace` (one key read, nothing decrypted). */
  async anyStored(rt: ResourceType, namespace: string | undefined): Promise<boolean> {
    return (await this.store.store.list(this.prefix(rt, namespace), { limit: 1 })).items.length > 0;
  }

  /**
   * One page at a revision. Without `collectCorrupt` the first value that does not decrypt or decode
   * fails the page; with it, such values are returned in `corrupt` and the page goes on (KEP-3926:
   * a list names every corrupt object of its range).
   */
  async list(
    rt: ResourceType,
    namespace: string | undefined,
    options: { limit?: number; after?: string; revision?: number; collectCorrupt?: boolean },
  ): Promise<ListPage> {
    const prefix = this.prefix(rt, namespace);
    const listOptions = {
      ...(options.limit ? { limit: options.limit } : {}),
      ...(options.after !== undefined ? { after: prefix + options.after } : {}),
      ...(options.revision !== undefined ? { revision: options.revision } : {}),
    };
    const page = options.collectCorrupt
      ? await this.store.list(prefix, { ...listOptions, onError: 'collect' })
      : await this.store.list(prefix, listOptions);
    const items: StoredObject[] = [];
    const corrupt: CorruptObject[] = [];
    for (const lv of page.items as ListedValue[]) {
      if (lv.error) {
        corrupt.push({ key: lv.kv.key, type: 'untransformable', reason: lv.error.reason });
        continue;
      }
      try {
        items.push(this.decode(rt, lv));
      } catch (err) {
        const c = options.collectCorrupt ? corruptObjectOf(err) : undefined;
        if (!c) throw err;
        corrupt.push(c);
      }
    }
    const last = page.items[page.items.length - 1];
    return {
      items,
      revision: page.revision,
      more: page.more,
      ...(last ? { lastKey: last.kv.key.slice(prefix.length) } : {}),
      corrupt,
    };
  }

  revision(): Promise<number> {
    return this.store.revision();
  }

  watch(
    rt: ResourceType,
    namespace: string | undefined,
    afterRevision: number,
    handlers: { onEvent(e: ObjectWatchEvent): void; onError(err: Error): void; onDecryptError(err: StoredValueTransformError): void },
  ): Watch {
    return this.store.watch(this.prefix(rt, namespace), {
      afterRevision,
      decryptPrevOnPut: true,
      onEvent: (e: DecryptedWatchEvent) => {
        try {
          if (e.type === 'put') {
            handlers.onEvent({ type: 'put', revision: e.revision, obj: this.decode(rt, e.value).obj, ...(e.prev ? { prev: this.decode(rt, e.prev).obj } : {}) });
          } else {
            const obj = e.prev ? withRevision(this.decode(rt, e.prev).obj, e.revision) : undefined;
            handlers.onEvent({ type: 'delete', revision: e.revision, ...(obj ? { obj } : {}) });
          }
        } catch (err) {
          handlers.onError(err as Error);
        }
      },
      onError: (err) => handlers.onError(err),
      onDecryptError: (err) => handlers.onDecryptError(err),
    });
  }
}

function withRevision(obj: KubeObject, rev: number): KubeObject {
  return { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rev) } };
}
