// Corrupt objects (KEP-3926): stored values no provider can decrypt (a lost or rotated-away key, a
// KMS that no longer knows the DEK) or that do not decode into an object. A list whose range holds
// some fails with one 500 `StoreReadError` Status naming each of them (kube-apiserver 1.32's
// aggregated error: at most 100, then a "too many" cause), so the operator learns every key to
// delete from one request instead of one per attempt. Messages name keys and reasons, never values.
import { StoredValueTransformError } from '../storage/errors.js';
import { ApiError, type StatusCause } from './errors.js';

/** kube's cap on the corrupt objects one list error names (etcd3 corruptObjErrAggregatorFactory(100)). */
export const MAX_REPORTED_CORRUPT_OBJECTS = 100;

export interface CorruptObject {
  /** The full storage key. */
  key: string;
  /** `untransformable` (decryption failed) or `undecodable` (decrypted, but not an object). */
  type: 'untransformable' | 'undecodable';
  /** Why, in the transformer's words (no matching prefix, authentication failed, KMS error, ...). */
  reason: string;
}

/** A stored value that decrypted but is not an object of its kind: kube's "object not decodable". */
export class UndecodableObjectError extends ApiError {
  constructor(
    readonly key: string,
    readonly why: string,
    resource: string,
  ) {
    super(500, 'InternalError', `Internal error occurred: the stored value of ${key} ${why}`, { name: key.slice(key.lastIndexOf('/') + 1), kind: resource });
  }
}

/** The CorruptObject an error of reading `key` stands for; undefined when it is another failure (store down, ...). */
export function corruptObjectOf(err: unknown): CorruptObject | undefined {
  if (err instanceof StoredValueTransformError && err.operation === 'read') return { key: err.key, type: 'untransformable', reason: err.reason };
  if (err instanceof UndecodableObjectError) return { key: err.key, type: 'undecodable', reason: err.why };
  return undefined;
}

/** Collects the corrupt objects of one request, keeping at most MAX_REPORTED_CORRUPT_OBJECTS (memory-bounded). */
export class CorruptObjects {
  readonly items: CorruptObject[] = [];
  /** More were found than are kept. */
  truncated = false;

  add(c: CorruptObject): void {
    if (this.items.length >= MAX_REPORTED_CORRUPT_OBJECTS) this.truncated = true;
    else this.items.push(c);
  }

  get size(): number {
    return this.items.length;
  }
}

function describe(c: CorruptObject): string {
  return c.type === 'untransformable' ? `${c.key}: data from the storage is not transformable: ${c.reason}` : `${c.key}: object not decodable: the value ${c.reason}`;
}

/**
 * The 500 StoreReadError of a list (or of the content of a namespace being deleted), as
 * kube-apiserver's aggregatedStorageError: details name `list` and the resource, one
 * UnexpectedServerResponse cause per key (field = the key), FieldValueTooMany when truncated. Unlike
 * kube, whose message says only "failed to read one or more secrets from the storage" (kubectl
 * prints nothing else), the message lists the keys too: that is what the operator acts on.
 */
export function corruptListError(resource: string, found: CorruptObjects): ApiError {
  return new ApiError(500, 'StoreReadError', corruptListMessage(resource, found), { name: 'list', kind: resource, causes: corruptCauses(found) });
}

/** `failed to read one or more <resource> from the storage: N undecryptable or undecodable: <key>: <why>; ...` */
export function corruptListMessage(resource: string, found: CorruptObjects): string {
  const keys = found.items.map(describe).join('; ') + (found.truncated ? `; and more (the first ${MAX_REPORTED_CORRUPT_OBJECTS} are named; atrest verify lists all)` : '');
  return `failed to read one or more ${resource} from the storage: ${found.size}${found.truncated ? '+' : ''} ${found.size === 1 && !found.truncated ? 'object cannot' : 'objects cannot'} be decrypted or decoded: ${keys}`;
}

/** One UnexpectedServerResponse cause per key (field = the key), FieldValueTooMany when truncated. */
export function corruptCauses(found: CorruptObjects): StatusCause[] {
  const causes: StatusCause[] = found.items.map((c) => ({ reason: 'UnexpectedServerResponse', message: describe(c), field: c.key }));
  if (found.truncated) causes.push({ reason: 'FieldValueTooMany', message: 'too many errors, the list is truncated' });
  return causes;
}
