// kube-apiserver's probe result caching (format.md §2.4): a success is reused for 20 s, a failure
// for 3 s; concurrent callers share the probe in flight (Go serialises them with a mutex).
export interface ProbeTtls {
  positiveMs: number;
  negativeMs: number;
}

export const DEFAULT_PROBE_TTLS: ProbeTtls = { positiveMs: 20_000, negativeMs: 3_000 };

export class CachedProbe {
  private last: { at: number; error: Error | undefined; ttl: number } | undefined;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly probe: () => Promise<void>,
    private readonly ttls: ProbeTtls,
    private readonly now: () => number,
  ) {}

  /** Forgets the last result and probes (or joins the probe in flight). */
  refresh(): Promise<void> {
    this.last = undefined;
    return this.check();
  }

  check(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    const last = this.last;
    if (last && this.now() - last.at < last.ttl) return last.error ? Promise.reject(last.error) : Promise.resolve();
    this.inFlight = this.probe().then(
      () => {
        this.last = { at: this.now(), error: undefined, ttl: this.ttls.positiveMs };
      },
      (err: unknown) => {
        const error = err instanceof Error ? err : new Error(String(err));
        this.last = { at: this.now(), error, ttl: this.ttls.negativeMs };
        throw error;
      },
    ).finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }
}
