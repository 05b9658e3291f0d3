// What the plugin answers, independent of transport: the v1beta1 and v2 KeyManagementService
// methods (format.md §2.1–2.2) on top of a KekBackend, with the request and response limits of the
// protocol. Failures are CallErrors carrying the gRPC status code; backend errors are mapped here
// (INVALID_CIPHERTEXT → InvalidArgument, UNAVAILABLE → Unavailable, KEY_RETIRED → FailedPrecondition,
// anything else → Internal).
import { create } from '@bufbuild/protobuf';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { AtrestError } from '../errors.js';
import * as v1 from '../gen/v1beta1/api_pb.js';
import * as v2 from '../gen/v2/api_pb.js';
import type { Annotations, KekBackend, WrapOptions, WrapResult } from './backend.js';
import type { RoundTripHealth } from './round-trip-health.js';

/** The only v1 API version (`version` of every v1beta1 request and of the Version answer). */
export const V1_API_VERSION = 'v1beta1';
export const RUNTIME_NAME = 'atrest';
/** KMS v2 limits on ciphertext and key_id (kube-apiserver rejects larger ones). */
export const MAX_CIPHERTEXT_BYTES = 1024;
export const MAX_KEY_ID_BYTES = 1024;
/** DEKs and seeds are 32 bytes; anything much larger is not a key and could not be wrapped within 1024 bytes. */
export const MAX_PLAINTEXT_BYTES = 512;

/** A call failure with its gRPC status code; the message is sent to the caller (no secrets). */
export class CallError extends AtrestError {
  constructor(readonly grpcCode: GrpcStatus, message: string, options?: { cause?: unknown }) {
    super('PLUGIN_CALL_FAILED', message, options);
  }
}

/**
 * gRPC codes of backend error codes. FailedPrecondition for a retired KEK version: the plugin is not
 * in a state in which it may unwrap the value (gRPC's "the system is not in a state required for the
 * operation"), until the version is restored; nothing else the plugin answers uses it, so callers
 * (`atrest verify`, src/storage/check-failure.ts) tell "restore the key" from "the value is refused".
 */
const GRPC_CODES: ReadonlyMap<string, GrpcStatus> = new Map([
  ['INVALID_CIPHERTEXT', GrpcStatus.INVALID_ARGUMENT],
  ['UNAVAILABLE', GrpcStatus.UNAVAILABLE],
  ['KEY_RETIRED', GrpcStatus.FAILED_PRECONDITION],
]);

/** Maps anything a backend throws to a CallError. */
export function toCallError(err: unknown): CallError {
  if (err instanceof CallError) return err;
  if (err instanceof AtrestError) return new CallError(GRPC_CODES.get(err.code) ?? GrpcStatus.INTERNAL, err.message, { cause: err });
  // Not one of ours: say little (the text of a foreign error is not vetted for secrets).
  return new CallError(GrpcStatus.INTERNAL, `internal error in the KMS plugin: ${err instanceof Error ? err.name : 'non-error thrown'}`, { cause: err });
}

const WITH_ANNOTATIONS: WrapOptions = Object.freeze({ annotations: true });

function invalid(message: string): CallError {
  return new CallError(GrpcStatus.INVALID_ARGUMENT, message);
}

function checkPlaintext(plain: Uint8Array): void {
  if (plain.length === 0) throw invalid('plaintext is empty');
  if (plain.length > MAX_PLAINTEXT_BYTES) throw invalid(`plaintext is ${plain.length} bytes, more than the ${MAX_PLAINTEXT_BYTES} this plugin wraps`);
}

function checkCiphertext(ciphertext: Uint8Array): void {
  if (ciphertext.length === 0) throw invalid('ciphertext is empty');
  if (ciphertext.length > MAX_CIPHERTEXT_BYTES) throw invalid(`ciphertext is ${ciphertext.length} bytes, more than ${MAX_CIPHERTEXT_BYTES}`);
}

function checkV1Version(version: string): void {
  if (version !== V1_API_VERSION) {
    throw invalid(`unsupported KMS API version ${JSON.stringify(version)}: this plugin serves v1beta1 (and v2 as v2.KeyManagementService)`);
  }
}

export interface KmsHandlersOptions {
  backend: KekBackend;
  health: RoundTripHealth;
  /** `version` of v2 Status answers: `v2beta1` (accepted by kube-apiserver 1.27 and later) or `v2` (1.29 and later). */
  statusVersion: string;
  runtimeVersion: string;
}

export class KmsHandlers {
  private lastKeyId = '';

  constructor(private readonly options: KmsHandlersOptions) {}

  // ---- v1beta1 ----

  async v1Version(req: v1.VersionRequest): Promise<v1.VersionResponse> {
    checkV1Version(req.version);
    return create(v1.VersionResponseSchema, { version: V1_API_VERSION, runtimeName: RUNTIME_NAME, runtimeVersion: this.options.runtimeVersion });
  }

  async v1Encrypt(req: v1.EncryptRequest): Promise<v1.EncryptResponse> {
    checkV1Version(req.version);
    checkPlaintext(req.plain);
    const { ciphertext } = await this.wrap(req.plain, false);
    return create(v1.EncryptResponseSchema, { cipher: ciphertext });
  }

  async v1Decrypt(req: v1.DecryptRequest): Promise<v1.DecryptResponse> {
    checkV1Version(req.version);
    checkCiphertext(req.cipher);
    return create(v1.DecryptResponseSchema, { plain: await this.unwrap(req.cipher, undefined) });
  }

  // ---- v2 (and v2alpha1, same messages) ----

  /** `version` is what this service name answers: the configured one for v2, `v2alpha1` for v2alpha1. */
  async v2Status(version: string = this.options.statusVersion): Promise<v2.StatusResponse> {
    const health = await this.options.health.check();
    let keyId: string;
    try {
      keyId = await this.options.backend.currentKeyId();
      this.lastKeyId = keyId;
    } catch (err) {
      // Report what we know and say why in healthz rather than failing the call.
      return create(v2.StatusResponseSchema, { version, healthz: `cannot read the current key_id: ${toCallError(err).message}`, keyId: this.lastKeyId });
    }
    return create(v2.StatusResponseSchema, { version, healthz: health.ok ? 'ok' : health.reason, keyId });
  }

  async v2Encrypt(req: v2.EncryptRequest): Promise<v2.EncryptResponse> {
    checkPlaintext(req.plaintext);
    const { ciphertext, keyId, annotations } = await this.wrap(req.plaintext, true);
    return create(v2.EncryptResponseSchema, annotations ? { ciphertext, keyId, annotations } : { ciphertext, keyId });
  }

  async v2Decrypt(req: v2.DecryptRequest): Promise<v2.DecryptResponse> {
    checkCiphertext(req.ciphertext);
    if (Buffer.byteLength(req.keyId) > MAX_KEY_ID_BYTES) throw invalid(`key_id is ${Buffer.byteLength(req.keyId)} bytes, more than ${MAX_KEY_ID_BYTES}`);
    return create(v2.DecryptResponseSchema, { plaintext: await this.unwrap(req.ciphertext, req.annotations) });
  }

  // ---- backend calls with the response limits checked ----

  /** `annotations`: the caller stores annotations with the value (kms v2), so the backend may return some. */
  private async wrap(plaintext: Uint8Array, annotations: boolean): Promise<WrapResult> {
    let result;
    try {
      result = await this.options.backend.encrypt(plaintext, annotations ? WITH_ANNOTATIONS : undefined);
    } catch (err) {
      throw toCallError(err);
    }
    const keyIdBytes = Buffer.byteLength(result.keyId);
    if (result.ciphertext.length === 0 || result.ciphertext.length > MAX_CIPHERTEXT_BYTES || keyIdBytes === 0 || keyIdBytes > MAX_KEY_ID_BYTES) {
      throw new CallError(GrpcStatus.INTERNAL, `the ${this.options.backend.kind} backend produced a ${result.ciphertext.length}-byte ciphertext with a ${keyIdBytes}-byte key_id (both must be 1..1024 bytes)`);
    }
    return result;
  }

  private async unwrap(ciphertext: Uint8Array, annotations: Annotations | undefined): Promise<Buffer> {
    try {
      return await this.options.backend.decrypt(ciphertext, annotations);
    } catch (err) {
      throw toCallError(err);
    }
  }
}
