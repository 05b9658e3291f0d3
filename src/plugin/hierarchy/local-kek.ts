// One local KEK of the key hierarchy: an AES-256 key held only in memory (a KeyObject; the raw bytes
// are zeroed as soon as the KeyObject holds them), with its wrapped form (the remote backend's
// ciphertext of it, which travels with every value it seals) and the remote key_id that wrapped it.
// It seals DEKs and seeds with AES-256-GCM (random 96-bit nonces from a CSPRNG pool) and opens them.
import { createHash, createSecretKey, type KeyObject } from 'node:crypto';
import { AesGcm } from '../../crypto/aes-gcm.js';
import { BackendError } from '../backend.js';
import { openWith, sealWith, type SealPrefix } from '../seal-prefix.js';
import { CARRIER_ANNOTATION, CARRIER_INLINE, LOCAL_KEK_ANNOTATION, sealPrefix, type ParsedEnvelope } from './envelope.js';

export const LOCAL_KEK_BYTES = 32;

/**
 * With random 96-bit nonces NIST SP 800-38D allows at most 2^32 seals under one key. A local KEK is
 * never used beyond this, whatever the flags say and however long the remote is away.
 */
export const AES_GCM_RANDOM_NONCE_LIMIT = 2 ** 32;

/** A local KEK's result of sealing: the ciphertext and, for kms v2, the annotations to store with it. */
export interface Sealed {
  ciphertext: Buffer;
  annotations?: Record<string, Uint8Array>;
}

export class InMemoryKek {
  readonly key: KeyObject;
  /** The remote backend's ciphertext of this key. */
  readonly wrapped: Buffer;
  /** The wrapped bytes as a map key (the decrypt cache's). */
  readonly cacheKey: string;
  /** `sha256:<first 16 hex>` of the wrapped bytes: names this local KEK in logs (public data, never the key). */
  readonly fingerprint: string;
  /**
   * key_id of the remote KEK version that wrapped it (what Encrypt and Status report for the current
   * one); for one unwrapped for Decrypt, what the remote backend reads from the wrapped bytes ('' if
   * it cannot say).
   */
  readonly remoteKeyId: string;
  /** When the remote KEK version was created (for the rotation-age metric), if known. */
  readonly remoteKeyCreatedAt: number | undefined;
  /** When this process made it or unwrapped it (epoch ms). */
  readonly createdAt: number;
  /** Values sealed with it by this process. */
  uses = 0;
  /**
   * Set while the remote version that wrapped it may not unwrap (retired): Decrypt of values under
   * it fails with this, as the remote would answer (retirement.ts). Only the current local KEK
   * carries it; cached ones are dropped instead.
   */
  refusal: BackendError | undefined = undefined;
  private readonly gcm: AesGcm;
  private readonly inline: SealPrefix;
  private readonly annotated: SealPrefix;
  private readonly annotations: Record<string, Uint8Array>;

  /** Takes the raw key bytes and zeroes them. */
  constructor(raw: Buffer, wrapped: Buffer, remoteKeyId: string, createdAt: number, remoteKeyCreatedAt?: number) {
    if (raw.length !== LOCAL_KEK_BYTES) {
      raw.fill(0);
      throw new BackendError('INVALID_CIPHERTEXT', `the wrapped local KEK unwrapped to ${raw.length} bytes, not ${LOCAL_KEK_BYTES}`);
    }
    this.key = createSecretKey(raw);
    raw.fill(0);
    this.gcm = new AesGcm(this.key);
    this.wrapped = Buffer.from(wrapped);
    this.cacheKey = cacheKeyOf(this.wrapped);
    this.fingerprint = `sha256:${createHash('sha256').update(this.wrapped).digest('hex').slice(0, 16)}`;
    this.remoteKeyId = remoteKeyId;
    this.remoteKeyCreatedAt = remoteKeyCreatedAt;
    this.createdAt = createdAt;
    this.inline = sealPrefix(CARRIER_INLINE, this.wrapped);
    this.annotated = sealPrefix(CARRIER_ANNOTATION, this.wrapped);
    this.annotations = Object.freeze({ [LOCAL_KEK_ANNOTATION]: this.wrapped });
  }

  /** Seals `plaintext`: inline carrier (kms v1) or annotation carrier (kms v2). */
  seal(plaintext: Uint8Array, withAnnotations: boolean): Sealed {
    const out = sealWith(this.gcm, withAnnotations ? this.annotated : this.inline, plaintext);
    return withAnnotations ? { ciphertext: out, annotations: this.annotations } : { ciphertext: out };
  }

  /**
   * Opens a parsed envelope whose wrapped local KEK is this one (found by those bytes: its AAD is
   * then this KEK's prefix of the envelope's carrier, byte for byte); INVALID_CIPHERTEXT when it
   * does not authenticate.
   */
  open(envelope: ParsedEnvelope): Buffer {
    const refusal = (): string => `the value does not authenticate under local KEK ${this.fingerprint} (tampered, or its wrapped local KEK was swapped)`;
    // Another wrapped local KEK (even of the same key) is another AAD: refused as its tag would be.
    if (!envelope.wrapped.equals(this.wrapped)) throw new BackendError('INVALID_CIPHERTEXT', refusal());
    const prefix = envelope.carrier === CARRIER_INLINE ? this.inline : this.annotated;
    return openWith(this.gcm, prefix.aad, envelope.sealed, refusal);
  }
}

/** The decrypt cache's key for wrapped local-KEK bytes. */
export function cacheKeyOf(wrapped: Uint8Array): string {
  return Buffer.from(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength).toString('base64');
}
