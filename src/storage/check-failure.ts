// "Cannot check" is not "lost" (issue #20): whether a failure to read a stored value says the value
// is undecryptable, or only that it could not be checked now because a KMS plugin or the store could
// not be reached. An undecryptable value is one that was looked at and refused: no provider prefix or
// key name matches, a ciphertext does not authenticate (GCM tag, CBC padding), the plugin answered
// Decrypt with an error of its own (InvalidArgument, NotFound, Internal, ...: it was reached and said
// no). Unreachable is a transport failure: the plugin's socket is missing or refuses, the call timed
// out, the plugin is overloaded or has no DEK seed yet (kms v2 before its first good Status), or the
// store could not be read. Only the first may ever lead an operator to delete an object.
//
// Classification is by the stable codes of our typed errors (AtrestError.code, KmsUnavailableError's
// grpcCode), walking causes and the failures an aggregate was made of, so it needs no imports of the
// layers: the CLI uses it to choose exit codes without loading them.
import { AtrestError } from '../errors.js';

/** gRPC codes that mean the plugin was not reached or could not answer in time: not a verdict on the value. */
export const UNREACHABLE_GRPC_CODES: ReadonlySet<string> = new Set(['Unavailable', 'DeadlineExceeded', 'Canceled', 'ResourceExhausted', 'Aborted']);

/** AtrestError codes that are unreachable-class by themselves. */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  // kms v2: no successful Status yet, so no DEK seed (and no verdict on staleness) — the plugin was not usable.
  'KMS_NOT_READY',
  // the store could not be reached or is closed (StoreError).
  'UNAVAILABLE',
  // a tool's check stopped because the store failed while it read (CheckIncompleteError).
  'CHECK_INCOMPLETE',
]);

/** A check (verify, status, rewrite) could not read the store to the end: nothing after the failure was looked at. */
export class CheckIncompleteError extends AtrestError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CHECK_INCOMPLETE', message, options);
  }
}

function isUnreachableLeaf(err: AtrestError): boolean {
  if (UNREACHABLE_CODES.has(err.code)) return true;
  // Only a KmsUnavailableError itself carries grpcCode; wrappers that copy its code (TransformError,
  // KmsWriteError) are judged by what they wrap.
  if (err.code === 'KMS_UNAVAILABLE' && 'grpcCode' in err) {
    const grpcCode = err.grpcCode;
    // No gRPC code at all: a client-side failure before an answer (health aggregates keep it in their cause).
    if (grpcCode === undefined) return !(err.cause instanceof AtrestError);
    return typeof grpcCode === 'string' && UNREACHABLE_GRPC_CODES.has(grpcCode);
  }
  return false;
}

/**
 * True when `err` (or anything it wraps or aggregates) says a KMS plugin or the store could not be
 * reached. An aggregate with one unreachable part is unreachable: the provider that could not be
 * asked might have read the value.
 */
export function isUnreachable(err: unknown): boolean {
  const seen = new Set<unknown>();
  const visit = (e: unknown, depth: number): boolean => {
    if (!(e instanceof Error) || depth > 16 || seen.has(e)) return false;
    seen.add(e);
    if (e instanceof AtrestError && isUnreachableLeaf(e)) return true;
    const parts = (e as { errors?: unknown }).errors;
    if (Array.isArray(parts) && parts.some((p) => visit(p, depth + 1))) return true;
    return visit(e.cause, depth + 1);
  };
  return visit(err, 0);
}

/** What a failed read means for a report. */
export type ReadFailureKind = 'unreachable' | 'undecryptable';

export function classifyReadFailure(err: unknown): ReadFailureKind {
  return isUnreachable(err) ? 'unreachable' : 'undecryptable';
}
