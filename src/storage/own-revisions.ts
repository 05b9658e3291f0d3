// The revisions a re-encryption run wrote itself, so that its recheck can tell them from other
// writers' (src/storage/reencrypt.ts, recheckOtherWrites).
import type { UpdateOutcome } from './types.js';

/** Revisions of a run's own writes, kept as sorted ranges of consecutive numbers (few, whatever the count). */
export class OwnRevisions {
  private ranges: Array<[number, number]> = [];
  private sorted = true;

  add(outcomes: readonly UpdateOutcome[]): void {
    const revs = [...new Set(outcomes.flatMap((o) => (o.ok ? [o.revision] : [])))].sort((a, b) => a - b);
    for (const r of revs) {
      const last = this.ranges[this.ranges.length - 1];
      if (last && r === last[1] + 1) last[1] = r;
      else if (!last || r > last[1]) this.ranges.push([r, r]);
      else {
        this.ranges.push([r, r]);
        this.sorted = false;
      }
    }
  }

  /** How many distinct revisions were recorded. */
  count(): number {
    return this.ranges.reduce((n, [a, b]) => n + b - a + 1, 0);
  }

  has(revision: number): boolean {
    if (!this.sorted) {
      this.ranges.sort((a, b) => a[0] - b[0]);
      this.sorted = true;
    }
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const [a, b] = this.ranges[mid] as [number, number];
      if (revision < a) hi = mid - 1;
      else if (revision > b) lo = mid + 1;
      else return true;
    }
    return false;
  }
}
