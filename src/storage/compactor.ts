// Periodic compaction the way kube-apiserver does it for etcd (`--etcd-compaction-interval`, default
// 5 minutes): at each tick, compact to the revision seen at the previous tick, so at least one
// interval of history stays for watches to resume from. Several servers on one etcd may each run
// one: compacting an already compacted revision is a no-op. (The embedded store compacts itself.)
import { silentLogger, type Logger } from '../log.js';
import type { Store } from './types.js';

export interface CompactorOptions {
  /** Default 5 minutes; 0 disables. */
  intervalMs?: number;
  logger?: Logger;
}

export interface Compactor {
  stop(): void;
}

export function startCompactor(store: Store, options: CompactorOptions = {}): Compactor {
  const intervalMs = options.intervalMs ?? 5 * 60_000;
  const logger = options.logger ?? silentLogger();
  if (intervalMs <= 0 || !store.compact) return { stop() {} };
  const compact = store.compact.bind(store);
  let previous = 0;
  let running = false;
  const tick = async (): Promise<void> => {
    if (running) return;
    running = true;
    try {
      const current = await store.revision();
      if (previous > 0) {
        await compact(previous);
        logger.debug({ revision: previous }, 'compacted the store');
      }
      previous = current;
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'store compaction failed');
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  void tick();
  return { stop: () => clearInterval(timer) };
}
