// Where IVs, nonces and HKDF infos come from. Production code always uses the system CSPRNG; a
// different source may be injected ONLY by tests that reproduce fixed-IV vectors byte for byte
// (nothing in the configuration can reach this parameter).
import { randomFillSync } from 'node:crypto';

/** Fills `out` completely with fresh bytes. */
export type NonceSource = (out: Uint8Array) => void;

/** One CSPRNG call per request: for callers that draw rarely. */
export const systemNonceSource: NonceSource = (out) => {
  randomFillSync(out);
};

/**
 * CSPRNG bytes drawn in blocks and handed out once each, in order. A call into OpenSSL costs a few
 * microseconds, as much as encrypting a small value, so each cipher keeps its own pool. Only for
 * public values (IVs, nonces, HKDF info, which are stored in clear next to the ciphertext); every
 * byte is used at most once and the used part is zeroed.
 */
export function createPooledNonceSource(poolSize = 4096): NonceSource {
  let pool: Buffer | undefined; // allocated on first use: read-only ciphers never need it
  let at = poolSize;
  return (out) => {
    if (out.length > poolSize) {
      randomFillSync(out);
      return;
    }
    if (pool === undefined || poolSize - at < out.length) {
      pool ??= Buffer.allocUnsafeSlow(poolSize);
      randomFillSync(pool);
      at = 0;
    }
    out.set(pool.subarray(at, at + out.length));
    pool.fill(0, at, at + out.length);
    at += out.length;
  };
}

/**
 * Test helper: a source that hands out the given bytes in order (IV, then the next nonce, ...) and
 * fails closed once they run out, so a test can never silently encrypt with a repeated nonce.
 */
export function fixedNonceSourceForTests(...chunks: Uint8Array[]): NonceSource {
  const queue = chunks.map((c) => Buffer.from(c));
  return (out) => {
    const next = queue.shift();
    if (!next || next.length !== out.length) {
      throw new Error(`fixed nonce source: expected ${out.length} bytes, have ${next ? next.length : 'none'}`);
    }
    out.set(next);
  };
}
