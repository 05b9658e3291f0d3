// The decrypt cache of the key hierarchy: unwrapped local KEKs, keyed by their wrapped bytes, at most
// `max` of them (least recently used goes first). A miss unwraps through the remote once, however
// many Decrypts of values under the same local KEK are waiting (one shared call), so a cold start
// after a restart costs one remote call per local KEK, not one per value.
import { LRUCache } from 'lru-cache';
import type { InMemoryKek } from './local-kek.js';

export type Unwrap = (wrapped: Buffer, cacheKey: string) => Promise<InMemoryKek>;

export class LocalKekCache {
  private readonly entries: LRUCache<string, InMemoryKek>;
  private readonly pending = new Map<string, Promise<InMemoryKek>>();

  constructor(readonly max: number) {
    this.entries = new LRUCache({ max });
  }

  get size(): number {
    return this.entries.size;
  }

  /** Adds a local KEK this process made (so values it sealed open without the remote). */
  add(kek: InMemoryKek): void {
    this.entries.set(kek.cacheKey, kek);
  }

  /** The cached local KEK, or undefined. */
  peek(cacheKey: string): InMemoryKek | undefined {
    return this.entries.get(cacheKey);
  }

  /** The cached local KEK for these wrapped bytes, else `unwrap` (shared by concurrent misses). */
  get(wrapped: Buffer, cacheKey: string, unwrap: Unwrap): Promise<InMemoryKek> {
    const hit = this.entries.get(cacheKey);
    if (hit) return Promise.resolve(hit);
    let waiting = this.pending.get(cacheKey);
    if (!waiting) {
      waiting = unwrap(wrapped, cacheKey).then(
        (kek) => {
          this.entries.set(cacheKey, kek);
          this.pending.delete(cacheKey);
          return kek;
        },
        (err: unknown) => {
          this.pending.delete(cacheKey);
          throw err;
        },
      );
      this.pending.set(cacheKey, waiting);
    }
    return waiting;
  }

  /** Drops every cached local KEK `drop` picks (a miss then unwraps through the remote again); returns how many. */
  evictWhere(drop: (kek: InMemoryKek) => boolean): number {
    const keys: string[] = [];
    for (const [key, kek] of this.entries.entries()) if (drop(kek)) keys.push(key);
    for (const key of keys) this.entries.delete(key);
    return keys.length;
  }

  clear(): void {
    this.entries.clear();
  }
}
