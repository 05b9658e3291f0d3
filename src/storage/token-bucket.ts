// Pacing for the re-encryption engine (`atrest rewrite --rate`, a migration's --storage-version-migration-rate).

export const realSleep = (ms: number): Promise<void> => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Paces writes to `rate` per second: a token bucket holding at most `capacity` tokens (so at most
 * about a second's worth of writes goes out at once after a pause).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    readonly capacity: number,
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = realSleep,
  ) {
    this.tokens = capacity;
    this.last = now();
  }

  /** Waits until `n` (≤ capacity) tokens are there and takes them. */
  async take(n: number): Promise<void> {
    for (;;) {
      const t = this.now();
      this.tokens = Math.min(this.capacity, this.tokens + ((t - this.last) * this.rate) / 1000);
      this.last = t;
      if (this.tokens >= n) {
        this.tokens -= n;
        return;
      }
      await this.sleep(Math.ceil(((n - this.tokens) * 1000) / this.rate));
    }
  }
}
