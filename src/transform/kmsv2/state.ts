// The kms v2 write state (format.md §2.5): the current DEK seed (as a ready AEAD), the
// EncryptedObject fields every write copies (key_id, encryptedDEKSource, annotations, type), the
// uid of the Encrypt call that made it, its decrypt-cache key and the write expiry. The Status
// probe (src/kms/v2-probe.ts) rotates or extends it; the transformer only reads it.
import { randomBytes, randomUUID } from 'node:crypto';
import { messageOf } from '../../errors.js';
import { EnvelopeError, KmsNotReadyError, KmsResponseError } from '../../kms/errors.js';
import type { KmsV2Service } from '../../kms/service.js';
import { ExtendedNonceGcm } from '../../crypto/index.js';
import { dekSourceCacheKey } from './cache-key.js';
import { HKDF_SHA256_XNONCE_AES_GCM_SEED, encodeEncryptedObject } from './encrypted-object.js';
import { keyIdHash, validateEncryptedObject } from './validation.js';

/** How long writes may go on after the last good Status (kube-apiserver's 3 minutes). */
export const WRITE_DEK_SOURCE_MAX_TTL_MS = 3 * 60 * 1000;

/** Authenticated encryption bound to the storage key: what a DEK or seed turns into. */
export interface DataAead {
  /** Bytes `seal` adds to the plaintext. */
  readonly overhead: number;
  /** `header ‖ sealed ‖ trailer` in one buffer. */
  seal(plaintext: Uint8Array, aad: Uint8Array, header?: Uint8Array, trailer?: Uint8Array): Buffer;
  open(data: Uint8Array, aad: Uint8Array): Buffer;
}

export interface DekSeedState {
  readonly aead: DataAead;
  readonly keyID: string;
  readonly encryptedDEKSource: Buffer;
  readonly annotations: Record<string, Uint8Array>;
  readonly type: number;
  /** uid of the Encrypt call that wrapped this seed. */
  readonly uid: string;
  /** Epoch ms after which writes fail. */
  readonly expiresAt: number;
  /** Decrypt-cache key of this seed (format.md §4). */
  readonly cacheKey: string;
  /**
   * EncryptedObject fields 2–5 (keyID, encryptedDEKSource, annotations, type) encoded once: every
   * write appends them behind its encryptedData instead of encoding the object again.
   */
  readonly encodedFields: Buffer;
}

export interface DekSeedStateOptions {
  now?: () => number;
  /** Write expiry after each good Status; default 3 min. */
  writeTtlMs?: number;
}

/** Go's time.Format(time.RFC3339) in UTC: `2006-01-02T15:04:05Z`. */
export function rfc3339(ms: number): string {
  if (!Number.isFinite(ms)) return '0001-01-01T00:00:00Z';
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

export class DekSeedStateHolder {
  private state: DekSeedState | undefined;
  /** Why the last Status call failed (undefined after a good one): the expiry error names it. */
  private lastStatusFailure: unknown;
  private priming: Promise<unknown> | undefined;
  private readonly now: () => number;
  private readonly writeTtlMs: number;

  constructor(options: DekSeedStateOptions = {}) {
    this.now = options.now ?? Date.now;
    this.writeTtlMs = options.writeTtlMs ?? WRITE_DEK_SOURCE_MAX_TTL_MS;
  }

  /** The state reads and writes use; throws before the first good Status. */
  current(): DekSeedState {
    if (!this.state) {
      const failure = this.lastStatusFailure;
      const why = failure === undefined ? '' : `; the last Status call failed: ${messageOf(failure)}`;
      throw new KmsNotReadyError('KMS_NOT_READY', `${NOT_READY} (no successful Status from the KMS v2 plugin yet${why})`, failure === undefined ? undefined : { cause: failure });
    }
    return this.state;
  }

  /** The state if a write may use it now; throws the expiry error otherwise (format.md §2.5). */
  forWrite(): DekSeedState {
    const state = this.current();
    const now = this.now();
    if (now > state.expiresAt) {
      const failure = this.lastStatusFailure;
      const why = failure === undefined ? '' : `; the last Status call failed: ${messageOf(failure)}`;
      throw new KmsNotReadyError('KMS_WRITE_KEY_EXPIRED',
        `encryptedDEKSource with keyID hash "${keyIdHash(state.keyID)}" expired at ${rfc3339(state.expiresAt)} (current time is ${rfc3339(now)})${why}`,
        failure === undefined ? undefined : { cause: failure });
    }
    return state;
  }

  /** The Status probe's outcome: its error, or undefined after a good answer. */
  noteStatusFailure(err: unknown): void {
    this.lastStatusFailure = err;
  }

  get ready(): boolean {
    return this.state !== undefined;
  }

  /** The first Status probe in flight: the transformer waits for it instead of failing at once. */
  setPriming(p: Promise<unknown>): void {
    this.priming = p.then(() => undefined, () => undefined);
  }

  async whenPrimed(): Promise<void> {
    await this.priming;
  }

  /**
   * After a good Status: keep the seed and extend its expiry when the key_id is unchanged, else
   * make a new seed, wrap it with Encrypt, and switch only if Encrypt reports the same key_id
   * (kube-apiserver `rotateDEKOnKeyIDChange`). On failure the old state stays (coasting).
   */
  async rotate(service: KmsV2Service, statusKeyId: string, uid: string = randomUUID()): Promise<{ rotated: boolean }> {
    const old = this.state;
    // The expiry clock starts before the network call: the TTL is an upper bound.
    const expiresAt = this.now() + this.writeTtlMs;
    // Writes are always type 1 (HKDF seed), as kube-apiserver 1.29+ writes them.
    if (old && old.keyID === statusKeyId && old.type === HKDF_SHA256_XNONCE_AES_GCM_SEED) {
      this.state = { ...old, expiresAt };
      return { rotated: false };
    }
    let errGen = '<nil>';
    let encryptKeyId = '';
    try {
      const next = await generateState(service, uid, expiresAt, this.now);
      encryptKeyId = next.keyID;
      if (next.keyID === statusKeyId) {
        this.state = next;
        return { rotated: true };
      }
    } catch (err) {
      errGen = messageOf(err);
    }
    const errState = old ? '<nil>' : NOT_READY;
    throw new KmsResponseError(`failed to rotate DEK uid="${uid}", useSeed=true, errState=${errState}, errGen=${errGen}, ` +
      `statusKeyIDHash="${keyIdHash(statusKeyId)}", encryptKeyIDHash="${keyIdHash(encryptKeyId)}", ` +
      `stateKeyIDHash="${keyIdHash(old?.keyID ?? '')}", expirationTimestamp=${rfc3339(old?.expiresAt ?? Number.NaN)}`);
  }
}

/** kube-apiserver `GenerateTransformer`: a fresh 32-byte seed wrapped by the plugin. */
async function generateState(service: KmsV2Service, uid: string, expiresAt: number, now: () => number): Promise<DekSeedState> {
  const secret = randomBytes(32);
  try {
    let resp;
    try {
      resp = await service.encrypt(uid, secret);
    } catch (err) {
      throw new EnvelopeError(`failed to encrypt DEK, error: ${messageOf(err)}`, { cause: err });
    }
    const type = HKDF_SHA256_XNONCE_AES_GCM_SEED;
    const encryptedDEKSource = Buffer.from(resp.ciphertext);
    const annotations: Record<string, Uint8Array> = {};
    for (const [k, v] of Object.entries(resp.annotations)) annotations[k] = Buffer.from(v);
    validateEncryptedObject({ encryptedData: ONE_BYTE, keyID: resp.keyId, encryptedDEKSource, annotations, encryptedDEKSourceType: type });
    return {
      aead: new ExtendedNonceGcm(secret, { now }),
      keyID: resp.keyId,
      encryptedDEKSource,
      annotations,
      type,
      uid,
      expiresAt,
      cacheKey: dekSourceCacheKey(type, encryptedDEKSource, resp.keyId, annotations),
      encodedFields: encodeEncryptedObject({ encryptedData: EMPTY, keyID: resp.keyId, encryptedDEKSource, annotations, encryptedDEKSourceType: type }),
    };
  } finally {
    secret.fill(0);
  }
}

const ONE_BYTE = Buffer.of(0);
const EMPTY = Buffer.alloc(0);
const NOT_READY = 'got unexpected nil transformer';
