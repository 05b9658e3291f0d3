// Typed errors of the KMS envelope providers and their gRPC clients. Messages follow
// kube-apiserver's texts (format.md §1.5, §1.6, §2) and never hold key material: key_ids appear
// only as `sha256:` hashes, DEKs/seeds/plaintext never.
import { AtrestError } from '../errors.js';
import { describeKmsFailure, type KmsProviderRef } from './naming.js';

/**
 * A kms envelope that cannot be read or made: bad framing, bad EncryptedObject, failed
 * authentication (code `DECRYPT_FAILED`, as src/transform and src/crypto use it).
 */
export class EnvelopeError extends AtrestError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DECRYPT_FAILED', message, options);
  }
}

/** The plugin could not be reached, timed out, or answered with a gRPC error. */
export class KmsUnavailableError extends AtrestError {
  /** The gRPC status code name (`Unavailable`, `DeadlineExceeded`, ...) when the failure was a gRPC one. */
  readonly grpcCode: string | undefined;
  /** No connection to the plugin was ready when the call failed (it never answered): "plugin unreachable". */
  readonly unreachable: boolean;
  /** kms v2 Decrypt: the `sha256:` hash of the key_id the value names (which KEK version it needs). */
  readonly keyIdHash: string | undefined;

  constructor(message: string, grpcCode?: string, options?: { cause?: unknown; unreachable?: boolean; keyIdHash?: string }) {
    super('KMS_UNAVAILABLE', message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.grpcCode = grpcCode;
    this.unreachable = options?.unreachable ?? false;
    this.keyIdHash = options?.keyIdHash;
  }
}

/** The plugin answered, but the answer breaks the protocol (sizes, key_id, annotations, version, healthz). */
export class KmsResponseError extends AtrestError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KMS_BAD_RESPONSE', message, options);
  }
}

/** kms v2: no DEK seed yet (no good Status so far), or the write seed expired. */
export class KmsNotReadyError extends AtrestError {
  constructor(code: 'KMS_NOT_READY' | 'KMS_WRITE_KEY_EXPIRED', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** A `kms.endpoint` that cannot be dialed (format.md §2.3). */
export class KmsEndpointError extends AtrestError {
  constructor(message: string) {
    super('KMS_ENDPOINT_INVALID', message);
  }
}

/**
 * A write through a kms provider failed: names the provider and its plugin (naming.ts) and keeps
 * the cause (fail closed).
 * The code is the cause's when it is a KMS condition (`KMS_UNAVAILABLE`, `KMS_NOT_READY`,
 * `KMS_WRITE_KEY_EXPIRED`, `KMS_BAD_RESPONSE`), else `ENCRYPT_FAILED`.
 */
export class KmsWriteError extends AtrestError {
  constructor(provider: KmsProviderRef, cause: unknown) {
    const code = cause instanceof AtrestError && cause.code.startsWith('KMS_') ? cause.code : 'ENCRYPT_FAILED';
    super(code, describeKmsFailure(provider, cause, 'cannot encrypt'), { cause });
  }
}

/**
 * Go's `utilerrors.NewAggregate(errs).Error()`: one error prints as itself, several as
 * `[e1, e2]` with duplicate messages dropped.
 */
export function aggregateMessage(messages: readonly string[]): string {
  const unique = [...new Set(messages)];
  if (unique.length === 1) return unique[0] ?? '';
  return `[${unique.join(', ')}]`;
}
