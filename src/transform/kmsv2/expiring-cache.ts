// A map whose entries expire after a fixed TTL but are still returned after expiry until the next
// garbage collection, which runs on every `set` (k8s.io/utils/cache Expiring with AllowExpiredGet,
// as the kms v2 DEK caches use it, format.md §4). Entries are kept in insertion order and a `set`
// re-inserts its key, so the map's order is the expiry order and GC stops at the first live entry.
export class ExpiringCache<V> {
  private readonly entries = new Map<string, { value: V; expiresAt: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: string): V | undefined {
    return this.entries.get(key)?.value;
  }

  set(key: string, value: V): void {
    const now = this.now();
    this.entries.delete(key);
    this.entries.set(key, { value, expiresAt: now + this.ttlMs });
    this.gc(now);
  }

  get size(): number {
    return this.entries.size;
  }

  private gc(now: number): void {
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > now) return;
      this.entries.delete(key);
    }
  }
}
