// A key-encryption-key backend of the KMS plugin: where the KEK lives and where DEKs are wrapped.
// The gRPC server (src/plugin/server.ts) turns v1beta1 and v2 calls into these; each backend
// (src/plugin/backends/<name>.ts) keeps its own ciphertext format, which records the KEK version
// that wrapped it, so old ciphertexts still unwrap after a rotation. For the remote backends (kmip,
// pkcs11) the plugin puts a key hierarchy (src/plugin/hierarchy) in front: a KekBackend too.
import { AtrestError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Registry } from '../metrics.js';

/** kms v2 EncryptResponse / DecryptRequest annotations: FQDN keys, 32 KiB in all at most. */
export type Annotations = Record<string, Uint8Array>;

export interface WrapResult {
  /** At most 1024 bytes (KMS v2 limit). */
  ciphertext: Buffer;
  /** Identifies the KEK version that wrapped it; never key material; at most 1024 bytes. */
  keyId: string;
  /** Stored with the ciphertext and handed back to decrypt (only when WrapOptions.annotations). */
  annotations?: Annotations;
}

export interface WrapOptions {
  /** The caller stores annotations with the ciphertext and passes them to decrypt (kms v2; not v1). */
  annotations?: boolean;
}

export interface KekBackend {
  readonly kind: string;
  /** key_id of the newest KEK version (what v2 Status reports). */
  currentKeyId(): Promise<string>;
  /**
   * When the newest KEK version was created (epoch ms), for the rotation-age metric; undefined when
   * the backend does not know. local: the key file's `created`; kmip: the object's Initial Date
   * (else Activation Date); pkcs11: CKA_START_DATE (midnight UTC of that day; objects made before
   * init-key/rotate-key set it have none).
   */
  currentKeyCreatedAt?(): Promise<number | undefined>;
  /** Wraps `plaintext` (a DEK or seed) with the newest KEK version. */
  encrypt(plaintext: Uint8Array, options?: WrapOptions): Promise<WrapResult>;
  /** Unwraps a ciphertext produced by `encrypt` with any version (with the annotations it returned, if any). */
  decrypt(ciphertext: Uint8Array, annotations?: Annotations): Promise<Buffer>;
  /** Looks for new KEK versions (rotation); the server calls it every few seconds. */
  refresh(): Promise<void>;
  /**
   * Why the backend is impaired although it may still serve (the key hierarchy: its remote KEK is
   * unreachable); undefined when it is not. The deep /healthz reports it.
   */
  degraded?(): string | undefined;
  /**
   * key_ids of the versions that may unwrap (not retired, not gone), as the last successful
   * refresh found them: a refresh that fails (an outage) leaves the answer as it was. No remote
   * call. The key hierarchy stops using local KEKs wrapped by any other version (kek.ts there).
   */
  usableKeyIds?(): ReadonlySet<string>;
  /**
   * Which version wrapped `ciphertext` (one of this backend's), read from the ciphertext, and when
   * that version is retired, the error `decrypt` answers for it; from what the last refresh loaded,
   * no remote call. Undefined when the ciphertext names no version the backend knows.
   */
  wrappedBy?(ciphertext: Uint8Array): WrappingVersion | undefined;
  close(): Promise<void>;
}

/** What `KekBackend.wrappedBy` says about a ciphertext. */
export interface WrappingVersion {
  keyId: string;
  /** Set when the version is retired: what `decrypt` of the ciphertext fails with. */
  refusal?: BackendError;
}

/**
 * Errors a backend raises use these codes (class BackendError below); the server maps them to gRPC
 * status codes: INVALID_CIPHERTEXT → InvalidArgument, UNAVAILABLE → Unavailable, KEY_RETIRED →
 * FailedPrecondition, others → Internal. KEY_RETIRED: the KEK version the ciphertext needs is
 * retired (or otherwise switched off) but its key material still exists — the value is not lost,
 * the version must be brought back (the message says how, or that atrest cannot and who can);
 * `atrest verify` reports such values apart from undecryptable ones (src/storage/check-failure.ts).
 * KEY_NOT_FOUND: the version does not exist (destroyed, never ours).
 */
export type BackendErrorCode = 'INVALID_CIPHERTEXT' | 'UNAVAILABLE' | 'KEY_NOT_FOUND' | 'KEY_RETIRED' | 'CONFIG' | 'INTERNAL';

/** One command-line flag of a backend; also read from the environment variable `env`. */
export interface BackendFlag {
  /** commander syntax, e.g. `--key-file <path>` */
  flags: string;
  description: string;
  /** e.g. `ATREST_KEY_FILE` */
  env: string;
  defaultValue?: string;
}

export type BackendOptions = Record<string, string | undefined>;

export interface BackendContext {
  log: Logger;
  metrics?: Registry;
}

/**
 * One KEK version as `kms-plugin list-keys` and `atrest rotate` see it. `current` wraps new
 * ciphertexts; `active` is an earlier version that still unwraps (a rotation not finished: values
 * may still need it); `retired` no longer unwraps (docs/operator-guide.md, "Retiring a KEK version").
 */
export interface KeyVersionInfo {
  keyId: string;
  version: number;
  state: 'current' | 'active' | 'retired';
  /** Epoch ms, when the backend records it. */
  createdAt?: number;
  /** Epoch ms of the retirement, when the backend records it. */
  retiredAt?: number;
  /** local: when a retired version leaves the key file for good; restore-key works until then. */
  purgeAfter?: number;
}

/** What `atrest kms-plugin --backend <name>` and its `init-key` / `rotate-key` subcommands use. */
export interface BackendModule {
  readonly name: string;
  readonly flags: BackendFlag[];
  /** Opens the backend for serving (fails with a clear error naming the flag when misconfigured). */
  open(options: BackendOptions, context: BackendContext): Promise<KekBackend>;
  /** Creates the first KEK version; returns its key_id. Refuses when one exists. */
  initKey(options: BackendOptions, context: BackendContext): Promise<string>;
  /** Adds a new KEK version that becomes current; returns its key_id. */
  rotateKey(options: BackendOptions, context: BackendContext): Promise<string>;
  /**
   * Set for backends whose KEK lives in a remote key manager (kmip, pkcs11): names it (e.g. `KMIP
   * server host:port`), and `atrest kms-plugin` puts the key hierarchy in front of the backend.
   */
  describeRemote?(options: BackendOptions): string;
  /** Every KEK version, oldest first (`kms-plugin list-keys`; `atrest rotate` finds old versions with it). */
  listKeys?(options: BackendOptions, context: BackendContext): Promise<KeyVersionInfo[]>;
  /**
   * Retires a version that is not current: it no longer unwraps. Only `atrest rotate` calls it, after
   * proving that no stored value needs the version. Retiring a retired version changes nothing.
   */
  retireKey?(options: BackendOptions, context: BackendContext, keyId: string): Promise<KeyVersionInfo>;
  /** Makes a retired version unwrap again (`kms-plugin restore-key`); absent where retirement is final (kmip). */
  restoreKey?(options: BackendOptions, context: BackendContext, keyId: string): Promise<KeyVersionInfo>;
  /**
   * The `atrest kms-plugin restore-key` command line that restores `keyId` with these options (no
   * secrets: the PIN file's path at most); absent where retirement is final (kmip). The serving
   * backend puts the same line into its Decrypt refusals.
   */
  restoreCommand?(options: BackendOptions, keyId: string): string;
}

export class BackendError extends AtrestError {
  constructor(code: BackendErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
