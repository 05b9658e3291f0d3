// The kms v2 status loop (format.md §2.5): a first probe at start; then a probe every minute while
// healthy, every 10 seconds after a failure until one succeeds. Intervals are injectable for tests;
// timers are unref'd so a forgotten loop never holds the process open.
import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';

export interface StatusLoopIntervals {
  healthyMs: number;
  unhealthyMs: number;
}

export const DEFAULT_STATUS_LOOP_INTERVALS: StatusLoopIntervals = { healthyMs: 60_000, unhealthyMs: 10_000 };

export class StatusLoop {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Settles when the first probe has finished, either way. */
  readonly primed: Promise<void>;

  constructor(
    private readonly providerName: string,
    private readonly probe: () => Promise<void>,
    private readonly intervals: StatusLoopIntervals,
    private readonly log?: Logger,
  ) {
    this.primed = this.tick();
  }

  private async tick(): Promise<void> {
    let ok = true;
    try {
      await this.probe();
    } catch (err) {
      ok = false;
      this.log?.warn({ provider: this.providerName, err: messageOf(err) }, 'kms plugin failed health check probe');
    }
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ok ? this.intervals.healthyMs : this.intervals.unhealthyMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
