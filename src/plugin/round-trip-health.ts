// The health behind v2 Status `healthz`: `ok` only when an encrypt/decrypt round trip through the
// backend succeeded recently. A result is cached (success for `successTtlMs`, failure for the
// shorter `failureTtlMs`) so Status stays cheap, and concurrent callers share one round trip.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { messageOf } from '../errors.js';
import type { KekBackend } from './backend.js';

export type HealthResult = { ok: true; keyId: string } | { ok: false; reason: string };

export interface RoundTripHealthOptions {
  successTtlMs?: number;
  failureTtlMs?: number;
  now?: () => number;
}

export class RoundTripHealth {
  private readonly successTtlMs: number;
  private readonly failureTtlMs: number;
  private readonly now: () => number;
  private cached: { result: HealthResult; until: number } | undefined;
  private inFlight: Promise<HealthResult> | undefined;
  private generation = 0;

  constructor(private readonly backend: KekBackend, options: RoundTripHealthOptions = {}) {
    this.successTtlMs = options.successTtlMs ?? 5000;
    this.failureTtlMs = options.failureTtlMs ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** The cached result while fresh, else a new round trip. Never rejects. */
  check(): Promise<HealthResult> {
    const cached = this.cached;
    if (cached && this.now() < cached.until) return Promise.resolve(cached.result);
    if (!this.inFlight) {
      const generation = this.generation;
      this.inFlight = this.roundTrip().then((result) => {
        if (generation === this.generation) {
          this.cached = { result, until: this.now() + (result.ok ? this.successTtlMs : this.failureTtlMs) };
        }
        this.inFlight = undefined;
        return result;
      });
    }
    return this.inFlight;
  }

  /** Forgets the cached result (after a rotation the next check exercises the new key). */
  invalidate(): void {
    this.generation++;
    this.cached = undefined;
    this.inFlight = undefined;
  }

  private async roundTrip(): Promise<HealthResult> {
    try {
      const probe = randomBytes(32);
      const wrapped = await this.backend.encrypt(probe);
      const unwrapped = await this.backend.decrypt(wrapped.ciphertext);
      if (unwrapped.length !== probe.length || !timingSafeEqual(unwrapped, probe)) {
        return { ok: false, reason: `round trip through the ${this.backend.kind} backend returned different plaintext` };
      }
      return { ok: true, keyId: wrapped.keyId };
    } catch (err) {
      return { ok: false, reason: `round trip through the ${this.backend.kind} backend failed: ${messageOf(err)}` };
    }
  }
}
