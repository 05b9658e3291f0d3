// "Cannot check" is not "lost" (issue #20): whether a failure to read a stored value says the value
// is undecryptable, or only that it could not be checked now because a KMS plugin or the store could
// not be reached. An undecryptable value is one that was looked at and refused: no provider prefix or
// key name matches, a ciphertext does not authenticate (GCM tag, CBC padding), the plugin answered
// Decrypt with an error of its own (InvalidArgument, NotFound, Internal, ...: it was reached and said
// no). Unreachable is a transport failure: the plugin's socket is missing or refuses, the call timed
// out, the plugin is overloaded or has no DEK seed yet (kms v2 before its first good Status), or the
// store could not be read. Only the first may ever lead an operator to delete an object.
//
// A third kind sits between them: a value that needs a retired KEK version. The plugin was reached
// and looked, but the version its ciphertext names is retired — switched off, its key material kept —
// and answered Decrypt with gRPC FailedPrecondition (src/plugin/kms-handlers.ts; the message names
// the key_id and the restore command). Such a value is not lost: the advice is "restore the version",
// never "delete the object". FailedPrecondition means exactly this from atrest's plugin; from another
// plugin it means some state of the key (a disabled key version, say) the plugin's own message
// explains — the safe reading too, since it keeps the unsafe-delete advice away.
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

/** Calls `leaf` on `err` and everything it wraps or aggregates until it returns a value. */
function findLeaf<T>(err: unknown, leaf: (e: Error) => T | undefined): T | undefined {
  const seen = new Set<unknown>();
  const visit = (e: unknown, depth: number): T | undefined => {
    if (!(e instanceof Error) || depth > 16 || seen.has(e)) return undefined;
    seen.add(e);
    const found = leaf(e);
    if (found !== undefined) return found;
    const parts = (e as { errors?: unknown }).errors;
    if (Array.isArray(parts)) {
      for (const p of parts) {
        const inPart = visit(p, depth + 1);
        if (inPart !== undefined) return inPart;
      }
    }
    return visit(e.cause, depth + 1);
  };
  return visit(err, 0);
}

/**
 * True when `err` (or anything it wraps or aggregates) says a KMS plugin or the store could not be
 * reached. An aggregate with one unreachable part is unreachable: the provider that could not be
 * asked might have read the value.
 */
export function isUnreachable(err: unknown): boolean {
  return findLeaf(err, (e) => (e instanceof AtrestError && isUnreachableLeaf(e) ? true : undefined)) === true;
}

/** The gRPC code a KMS plugin answers Decrypt with when the KEK version the value needs is retired. */
export const RETIRED_KEY_GRPC_CODE = 'FailedPrecondition';

/** What is known about a read refused for a retired KEK version. */
export interface RetiredKeyRefusal {
  /** `sha256:` hash of the key_id the value names (kms v2); absent for kms v1 values, which do not record it. */
  keyIdHash?: string;
}

/**
 * When `err` (or anything it wraps or aggregates) is a KMS plugin's refusal because the KEK version
 * the value needs is retired (FailedPrecondition): what it says about the version; else undefined.
 * Unreachable wins over it in classifyReadFailure (a provider not asked might have read the value).
 */
export function retiredKeyRefusal(err: unknown): RetiredKeyRefusal | undefined {
  return findLeaf(err, (e): RetiredKeyRefusal | undefined => {
    if (!(e instanceof AtrestError) || e.code !== 'KMS_UNAVAILABLE' || (e as { grpcCode?: unknown }).grpcCode !== RETIRED_KEY_GRPC_CODE) return undefined;
    // The outermost KmsUnavailableError of the chain carries the value's key_id hash (the kms v2 transformer sets it).
    const hash = (e as { keyIdHash?: unknown }).keyIdHash;
    return typeof hash === 'string' ? { keyIdHash: hash } : {};
  });
}

/** What a failed read means for a report. */
export type ReadFailureKind = 'unreachable' | 'needs-retired-key' | 'undecryptable';

export function classifyReadFailure(err: unknown): ReadFailureKind {
  if (isUnreachable(err)) return 'unreachable';
  return retiredKeyRefusal(err) ? 'needs-retired-key' : 'undecryptable';
}
