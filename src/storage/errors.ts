// Typed errors of the storage layer. Both backends raise the same codes for the same situations, so
// the API server maps them to Kubernetes Status objects without knowing which backend is in use.
// Messages name the key and the operation, never a value.
import { AtrestError } from '../errors.js';
import type { CreateGuard, KeyValue } from './types.js';

export type StoreErrorCode =
  /** create: the key exists. */
  | 'KEY_EXISTS'
  /** update/delete at a revision: the key was changed since; `current` holds what is stored now. */
  | 'CONFLICT'
  /** update: the key does not exist. */
  | 'NOT_FOUND'
  /** createGuarded: the guard key is no longer at the revision the caller named (changed, deleted or recreated). */
  | 'GUARD_CHANGED'
  /** watch/list at a revision that compaction removed; `compactRevision` when the backend says. */
  | 'COMPACTED'
  /** list at a revision the store has not reached yet. */
  | 'FUTURE_REVISION'
  /** the backend cannot be reached or the store is closed (transient: the client may retry). */
  | 'UNAVAILABLE'
  /** the write is larger than the backend takes (etcd's --max-request-bytes): that write never will be. */
  | 'TOO_LARGE'
  /** Lasting write failures (LASTING_WRITE_FAILURES): nothing will be written until an operator acts. */
  /** no space: the disk holding the embedded store is full, or etcd's NOSPACE alarm (quota) is raised. */
  | 'NO_SPACE'
  /** the embedded store's files cannot be written: a read-only file system or no permission. */
  | 'READ_ONLY'
  /** the disk reported an I/O error (or etcd its CORRUPT alarm). */
  | 'IO_ERROR';

/** Codes of a store that cannot write for a lasting reason (not worth a client's retry). */
export const LASTING_WRITE_FAILURES: readonly StoreErrorCode[] = ['NO_SPACE', 'READ_ONLY', 'IO_ERROR'];

export function isLastingWriteFailure(err: unknown): err is StoreError {
  return err instanceof StoreError && LASTING_WRITE_FAILURES.includes(err.code);
}

export interface StoreErrorDetails {
  key?: string;
  current?: KeyValue;
  compactRevision?: number;
  cause?: unknown;
}

export class StoreError extends AtrestError {
  declare readonly code: StoreErrorCode;
  /** The key the operation was about, when there is one. */
  readonly key: string | undefined;
  /** CONFLICT: the key's current value and revisions. */
  readonly current: KeyValue | undefined;
  /** COMPACTED: the revision history now starts after, when known. */
  readonly compactRevision: number | undefined;

  constructor(code: StoreErrorCode, message: string, details: StoreErrorDetails = {}) {
    super(code, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.key = details.key;
    this.current = details.current;
    this.compactRevision = details.compactRevision;
  }
}

/** create refused: `key` exists (both backends). */
export function keyExists(key: string): StoreError {
  return new StoreError('KEY_EXISTS', `key ${key} already exists`, { key });
}

/** createGuarded refused: `guard.key` is no longer at `guard.modRevision`; `current` is the guard key as it is now (absent: deleted). */
export function guardChanged(key: string, guard: CreateGuard, current: KeyValue | undefined): StoreError {
  return new StoreError('GUARD_CHANGED', `create of ${key}: ${guard.key} is no longer at revision ${guard.modRevision}`, {
    key,
    ...(current ? { current } : {}),
  });
}

/** True when `err` is a StoreError with `code`. */
export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}

/**
 * A stored value that could not be decrypted (read) or encrypted (write) by the transformer of its
 * key. Code `STORAGE_TRANSFORM_FAILED`; the message names the key; the transformer's error is the
 * `cause` (its message is included: TransformErrors never hold key material or plaintext).
 */
export class StoredValueTransformError extends AtrestError {
  readonly key: string;
  readonly operation: 'read' | 'write';
  /** Why, without the key: a TransformError's `reason` (its message already names the key), else the cause's message. */
  readonly reason: string;

  constructor(key: string, operation: 'read' | 'write', cause: unknown) {
    const reason = reasonOf(cause);
    const what = operation === 'read' ? 'decrypt the stored value of' : 'encrypt the value for';
    super('STORAGE_TRANSFORM_FAILED', `failed to ${what} ${key}: ${reason}`, { cause });
    this.key = key;
    this.operation = operation;
    this.reason = reason;
  }
}

function reasonOf(cause: unknown): string {
  const reason = (cause as { reason?: unknown } | null | undefined)?.reason;
  if (typeof reason === 'string' && reason !== '') return reason;
  return cause instanceof Error ? cause.message : String(cause);
}
