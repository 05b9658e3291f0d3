// kms v2 type 1 data encryption, `HKDF_SHA256_XNONCE_AES_GCM_SEED` (format.md §1.6): every write draws
// a fresh 32-byte `info`, derives `key = HKDF-Expand(SHA-256, seed, info, 32)` and stores
// `info(32) ‖ nonce(12) ‖ ciphertext ‖ tag(16)` (AES-256-GCM, AAD = storage key). The random info
// extends the nonce space, so one seed can encrypt practically unlimited values.
//
// `ExtendedNonceGcm` is the object to keep per seed: like kube-apiserver's `aes/cache.go` it caches
// the key derived on a read per storage key (checked against the exact info bytes) for 10 minutes,
// and serves an expired entry until the next sweep, so reading the same object again derives nothing.
// Writes fill the cache too (kube-apiserver does), so reading back a value just written derives nothing.
import { createSecretKey, type KeyObject } from 'node:crypto';
import { AesGcm, GCM_NONCE_SIZE, GCM_TAG_SIZE } from './aes-gcm.js';
import { CryptoError, ERR_SHORT_DATA } from './errors.js';
import { hkdfSha256Expand32 } from './hkdf.js';
import { createPooledNonceSource, type NonceSource } from './nonce.js';

export const XNONCE_INFO_SIZE = 32;
/** kube-apiserver rejects shorter seeds; it generates 32 bytes itself. */
export const XNONCE_MIN_SEED_SIZE = 32;
export const XNONCE_DERIVED_KEY_TTL_MS = 10 * 60 * 1000;
/** Cache-entry memory is cut from slabs of this size (1,024 entries). */
const ENTRY_SLAB_SIZE = 64 * 1024;

export interface ExtendedNonceGcmOptions {
  /** Tests only: the source of `info` (first 32 bytes drawn) and then the GCM nonce (12 bytes). */
  nonceSource?: NonceSource;
  /** Clock for the derived-key cache (epoch ms). */
  now?: () => number;
  /** Lifetime of a cached derived key (default 10 min, kube-apiserver's). */
  cacheTtlMs?: number;
}

interface DerivedKey {
  info: Buffer;
  gcm: AesGcm;
  expiresAt: number;
}

export class ExtendedNonceGcm {
  /** Bytes `seal` adds to the plaintext: info, nonce and tag. */
  readonly overhead = XNONCE_INFO_SIZE + GCM_NONCE_SIZE + GCM_TAG_SIZE;
  private readonly seed: KeyObject;
  private readonly nonceSource: NonceSource;
  private readonly now: () => number;
  private readonly ttlMs: number;
  /** storage key (latin1, one char per byte) → the key derived for the value last read there. */
  private readonly derived = new Map<string, DerivedKey>();
  private slab: Buffer = Buffer.alloc(0);
  private slabAt = 0;
  private lastSweep: number;

  constructor(seed: Uint8Array, options: ExtendedNonceGcmOptions = {}) {
    if (seed.length < XNONCE_MIN_SEED_SIZE) {
      throw new CryptoError('INVALID_KEY', `invalid seed length ${seed.length} used for key generation`);
    }
    this.seed = createSecretKey(seed);
    this.nonceSource = options.nonceSource ?? createPooledNonceSource();
    this.now = options.now ?? Date.now;
    this.ttlMs = options.cacheTtlMs ?? XNONCE_DERIVED_KEY_TTL_MS;
    this.lastSweep = this.now();
  }

  /** Returns `header ‖ info ‖ nonce ‖ ciphertext ‖ tag ‖ trailer`, authenticating `aad`. */
  seal(plaintext: Uint8Array, aad: Uint8Array, header?: Uint8Array, trailer?: Uint8Array): Buffer {
    const h = header?.length ?? 0;
    const front = Buffer.allocUnsafe(h + XNONCE_INFO_SIZE);
    if (header) front.set(header, 0);
    const { info, key } = this.entryMemory();
    this.nonceSource(info);
    front.set(info, h);
    this.derive(info, key);
    const gcm = new AesGcm(key, { nonceSource: this.nonceSource, ownKeyBuffer: true });
    // Like kube-apiserver (aes_extended_nonce.go sets its cache on writes too): a read of the value
    // just written under this storage key finds its derived key instead of deriving it again.
    this.remember(Buffer.from(aad.buffer, aad.byteOffset, aad.byteLength).toString('latin1'), { info, gcm, expiresAt: 0 });
    return gcm.seal(plaintext, aad, front, trailer);
  }

  /** Reads `info ‖ nonce ‖ ciphertext ‖ tag` bound to `aad`. */
  open(data: Uint8Array, aad: Uint8Array): Buffer {
    if (data.length < XNONCE_INFO_SIZE) throw new CryptoError('DECRYPT_FAILED', ERR_SHORT_DATA);
    const info = data.subarray(0, XNONCE_INFO_SIZE);
    const cacheKey = Buffer.from(aad.buffer, aad.byteOffset, aad.byteLength).toString('latin1');
    let entry = this.derived.get(cacheKey);
    if (entry === undefined || !entry.info.equals(info)) {
      // Own copy of info: the stored value it points into must not stay alive through the cache.
      const own = this.entryMemory();
      own.info.set(info);
      this.derive(own.info, own.key);
      entry = { info: own.info, gcm: new AesGcm(own.key, { nonceSource: this.nonceSource, ownKeyBuffer: true }), expiresAt: 0 };
      this.remember(cacheKey, entry);
    }
    return entry.gcm.open(data.subarray(XNONCE_INFO_SIZE), aad);
  }

  /** Writes the key derived from `info` into `out` (32 bytes). */
  private derive(info: Uint8Array, out: Buffer): void {
    const digest = hkdfSha256Expand32(this.seed, info);
    out.set(digest);
    digest.fill(0);
  }

  /**
   * 64 bytes for one cache entry (info, derived key), cut from a slab only this object uses. Up to
   * one entry per storage key written or read in the last 10 minutes stays cached (100,000 after a
   * burst of writes): a digest or a KeyObject per entry costs ~0.6 KB of native memory each, and
   * slices of Node's shared buffer pool would keep whole pool chunks of dead values alive.
   */
  private entryMemory(): { info: Buffer; key: Buffer } {
    if (this.slabAt + 2 * XNONCE_INFO_SIZE > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(ENTRY_SLAB_SIZE);
      this.slabAt = 0;
    }
    const at = this.slabAt;
    this.slabAt += 2 * XNONCE_INFO_SIZE;
    return { info: this.slab.subarray(at, at + XNONCE_INFO_SIZE), key: this.slab.subarray(at + XNONCE_INFO_SIZE, at + 2 * XNONCE_INFO_SIZE) };
  }

  /** Number of cached derived keys (for tests and metrics). */
  get cachedKeys(): number {
    return this.derived.size;
  }

  private remember(cacheKey: string, entry: DerivedKey): void {
    const now = this.now();
    entry.expiresAt = now + this.ttlMs;
    this.derived.set(cacheKey, entry);
    // Expired entries stay usable until a sweep, which runs at most once per TTL, on a write to the cache.
    if (now - this.lastSweep >= this.ttlMs) {
      this.lastSweep = now;
      for (const [k, v] of this.derived) if (v.expiresAt <= now) this.derived.delete(k);
    }
  }
}

/** One-shot seal with a seed (no cache); prefer an `ExtendedNonceGcm` kept per seed. */
export function sealExtendedNonce(seed: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, options: ExtendedNonceGcmOptions = {}): Buffer {
  return new ExtendedNonceGcm(seed, options).seal(plaintext, aad);
}

/** One-shot open with a seed (no cache); prefer an `ExtendedNonceGcm` kept per seed. */
export function openExtendedNonce(seed: Uint8Array, data: Uint8Array, aad: Uint8Array): Buffer {
  return new ExtendedNonceGcm(seed).open(data, aad);
}
