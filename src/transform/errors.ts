// Errors of the transformer layer. A TransformError says why a value could not be read or written in
// kube-apiserver's words (`reason`) and, at the resource level, which storage key it was: the key is
// not secret, the value, keys and plaintext never appear.
import { AtrestError } from '../errors.js';

export type TransformErrorCode =
  /** No provider prefix of the chain matched the stored value. */
  | 'NO_MATCHING_PREFIX'
  /** No key name of an aescbc/aesgcm/secretbox provider matched. */
  | 'NO_MATCHING_KEY'
  /** The identity provider was given a `k8s:enc:` value. */
  | 'UNEXPECTED_ENCRYPTED_DATA'
  | 'DECRYPT_FAILED'
  | 'ENCRYPT_FAILED';

export interface TransformErrorOptions {
  /** The storage key (dataCtx) of the value, named in the message. */
  storageKey?: string;
  /** `read` (default) or `write`: only changes the message's verb. */
  operation?: 'read' | 'write';
  /** The individual failures an aggregate was made of (flattened). */
  errors?: readonly Error[];
  cause?: unknown;
}

export class TransformError extends AtrestError {
  /** kube-apiserver's text of the failure, without the storage key. */
  readonly reason: string;
  readonly storageKey: string | undefined;
  /** The failures of every provider/key that was tried, when there were several. */
  readonly errors: readonly Error[];

  constructor(code: string, reason: string, options: TransformErrorOptions = {}) {
    const { storageKey, operation = 'read' } = options;
    const message = storageKey === undefined
      ? reason
      : `cannot ${operation === 'write' ? 'encrypt' : 'decrypt'} the value of storage key ${JSON.stringify(storageKey)}: ${reason}`;
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.reason = reason;
    this.storageKey = storageKey;
    this.errors = options.errors ?? [];
  }
}

/** A provider list that cannot be turned into transformers (format.md §3.3 construction errors). */
export class TransformerConfigError extends AtrestError {
  constructor(code: 'TRANSFORMER_CONFIG_INVALID' | 'KMS_CLIENT_REQUIRED', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The reason text of any error (a TransformError's reason, otherwise its message). */
export function reasonOf(err: unknown): string {
  if (err instanceof TransformError) return err.reason;
  return err instanceof Error ? err.message : String(err);
}

/** Flattens nested aggregates, the way Go's `utilerrors.Aggregate` visits them. */
export function flattenErrors(errors: readonly unknown[]): Error[] {
  const out: Error[] = [];
  for (const err of errors) {
    if (err instanceof TransformError && err.errors.length > 1) out.push(...flattenErrors(err.errors));
    else out.push(err instanceof Error ? err : new Error(String(err)));
  }
  return out;
}

/**
 * Go's `errors.Reduce(utilerrors.NewAggregate(errs))`: one error stays itself; several print as
 * `[e1, e2]` with repeated messages dropped (one distinct message prints bare).
 */
export function aggregateReason(errors: readonly Error[]): string {
  const seen = new Set<string>();
  for (const err of errors) seen.add(reasonOf(err));
  const unique = [...seen];
  return unique.length === 1 ? (unique[0] ?? '') : `[${unique.join(', ')}]`;
}

/** The code an error carries into an aggregate: its own stable code, or the generic one of the operation. */
export function codeOf(err: unknown, fallback: TransformErrorCode): string {
  return err instanceof AtrestError ? err.code : fallback;
}

/** Storage keys are bytes; they are shown as UTF-8 (JSON-quoted where printed, so control bytes are escaped). */
export function storageKeyText(dataCtx: Uint8Array): string {
  return Buffer.from(dataCtx.buffer, dataCtx.byteOffset, dataCtx.byteLength).toString('utf8');
}
