// The ONE place where errors become Kubernetes `Status` objects (HTTP code, reason, message). Typed
// errors of every layer are mapped here: ApiError as is, StoreError by code, values that fail to
// decrypt or encrypt as 500 InternalError naming the key, anything else as a generic 500 (logged,
// not shown: an unexpected error's text is not known to be free of sensitive data).
import { groupResourceString } from '../config/group-resource.js';
import type { Logger } from '../log.js';
import { isStoreError, StoredValueTransformError } from '../storage/errors.js';
import { parseStorageKey } from '../storage/keys.js';
import { ApiError, type StatusDetails } from './errors.js';

export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

export function failureStatus(code: number, reason: string, message: string, details?: StatusDetails): Status {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

/** Storage keys name the resource and object; used to word store errors like kube does (`resource.group` for a named group). */
function describeKey(prefix: string, key: string | undefined): { resource: string; qualified: string; group?: string; name: string } {
  if (key !== undefined) {
    try {
      const { groupResource: { group, resource }, name } = parseStorageKey(prefix, key);
      // The keys of store errors are the served kinds' keys: a resource is never `*` here.
      return { resource, name, qualified: groupResourceString({ group, resource }), ...(group ? { group } : {}) };
    } catch {
      // fall through
    }
  }
  return { resource: 'objects', qualified: 'objects', name: key ?? '' };
}

/** What a client is told about a store that cannot write (the log has the details). */
const CANNOT_WRITE = {
  NO_SPACE: 'no space left (a full disk, or etcd\'s NOSPACE alarm)',
  READ_ONLY: 'the data directory is read-only or not writable',
  IO_ERROR: 'the disk reported an I/O error',
} as const;

export function statusFromError(err: unknown, etcdPrefix: string, log?: Logger): Status {
  if (err instanceof ApiError) return failureStatus(err.httpCode, err.reason, err.message, err.details);
  if (err instanceof StoredValueTransformError) {
    log?.error({ key: err.key, operation: err.operation, err: err.message }, 'storage transformation failed');
    const { resource, name } = describeKey(etcdPrefix, err.key);
    return failureStatus(500, 'InternalError', `Internal error occurred: ${err.message}`, {
      name,
      kind: resource,
      causes: [{ reason: 'UnexpectedServerResponse', message: err.message }],
    });
  }
  if (isStoreError(err)) {
    const { resource, qualified, group, name } = describeKey(etcdPrefix, err.key);
    // kube's NewAlreadyExists, NewNotFound and NewConflict carry the group; the 413 and 500s below keep
    // only name and kind (kube's NewRequestEntityTooLargeError has no details, NewInternalError only causes).
    const details = { name, ...(group ? { group } : {}), kind: resource };
    switch (err.code) {
      case 'KEY_EXISTS':
        return failureStatus(409, 'AlreadyExists', `${qualified} "${name}" already exists`, details);
      case 'NOT_FOUND':
        return failureStatus(404, 'NotFound', `${qualified} "${name}" not found`, details);
      case 'CONFLICT':
        return failureStatus(
          409,
          'Conflict',
          `Operation cannot be fulfilled on ${qualified} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
          details,
        );
      case 'COMPACTED':
        return failureStatus(410, 'Expired', `The resourceVersion for the provided list is too old.`);
      case 'FUTURE_REVISION':
        return failureStatus(504, 'Timeout', `Too large resource version`, { retryAfterSeconds: 1 });
      case 'UNAVAILABLE':
        log?.error({ err: err.message }, 'storage unavailable');
        return failureStatus(503, 'ServiceUnavailable', 'the storage backend is unavailable', { retryAfterSeconds: 1 });
      case 'TOO_LARGE':
        // kube's answer to etcd's ErrRequestTooLarge: the object is too large for the store, for good.
        return failureStatus(413, 'RequestEntityTooLarge', `Request entity too large: ${err.message}`, { name, kind: resource });
      case 'NO_SPACE':
      case 'READ_ONLY':
      case 'IO_ERROR':
        // Lasting: no Retry-After (a retry cannot succeed until an operator acts). The log names the
        // store and the remedy; the client is told the cause without paths.
        log?.error({ err: err.message, key: err.key, code: err.code }, `storage cannot write: ${CANNOT_WRITE[err.code]}`);
        return failureStatus(500, 'InternalError', `Internal error occurred: the storage cannot write ${resource} "${name}": ${CANNOT_WRITE[err.code]}`, {
          name,
          kind: resource,
          causes: [{ reason: 'UnexpectedServerResponse', message: CANNOT_WRITE[err.code] }],
        });
    }
  }
  log?.error({ err: err instanceof Error ? { name: err.name, message: err.message, stack: err.stack } : String(err) }, 'unexpected error');
  return failureStatus(500, 'InternalError', 'Internal error occurred: unexpected server error');
}
