// kube-apiserver's --max-requests-inflight / --max-mutating-requests-inflight: at most N read-only
// and M mutating requests are served at once; the next one gets 429 TooManyRequests with a
// Retry-After header at once instead of queueing, so a burst degrades into 429s (clients retry)
// rather than unbounded memory. Long-running requests (watch) and the health/version endpoints are
// not counted, like kube. Unlike kube, system:masters is not exempt: atrest has one admin token.
export { DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT, DEFAULT_MAX_REQUESTS_INFLIGHT } from './defaults.js';
/** Seconds a client is told to wait (kube sends 1). */
export const RETRY_AFTER_SECONDS = 1;

export interface InflightLimits {
  /** Read-only requests served at once; 0 = no limit. */
  maxRequestsInflight: number;
  /** Mutating requests (POST, PUT, PATCH, DELETE) served at once; 0 = no limit. */
  maxMutatingRequestsInflight: number;
}

export function isMutatingMethod(method: string): boolean {
  return method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE';
}

export class InflightLimiter {
  private readOnly = 0;
  private mutating = 0;
  private rejectedCount = 0;

  constructor(private readonly limits: InflightLimits) {
    for (const [flag, v] of [['--max-requests-inflight', limits.maxRequestsInflight], ['--max-mutating-requests-inflight', limits.maxMutatingRequestsInflight]] as const) {
      if (!Number.isInteger(v) || v < 0) throw new RangeError(`${flag} must be a non-negative integer, got ${String(v)}`);
    }
  }

  /** Requests turned away with 429 so far. */
  get rejected(): number {
    return this.rejectedCount;
  }

  get inflight(): { readOnly: number; mutating: number } {
    return { readOnly: this.readOnly, mutating: this.mutating };
  }

  /** A release function when there is room (call it exactly once when the request ends), else undefined. */
  tryAcquire(mutating: boolean): (() => void) | undefined {
    const limit = mutating ? this.limits.maxMutatingRequestsInflight : this.limits.maxRequestsInflight;
    const current = mutating ? this.mutating : this.readOnly;
    if (limit > 0 && current >= limit) {
      this.rejectedCount++;
      return undefined;
    }
    if (mutating) this.mutating++;
    else this.readOnly++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (mutating) this.mutating--;
      else this.readOnly--;
    };
  }
}
