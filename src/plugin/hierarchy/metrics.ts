// Prometheus metrics of the key hierarchy (registered into the plugin's registry, never the global
// one): every call to the remote KEK by operation and outcome, whether the remote answers, the
// current local KEK (uses, creation time, overdue), local KEK rotations by reason and the decrypt
// cache. Gauges about the current local KEK are read at scrape time, not set on the hot path.
import { Counter, Gauge, type Registry } from 'prom-client';
import { reuseMetric } from '../../metrics.js';

/** What a call to the remote KEK was for. */
export type RemoteOperation = 'wrap' | 'unwrap' | 'refresh' | 'verify';
/** ok; unavailable (no answer or a failure: an outage); refused (the key is unusable or the bytes are not its). */
export type RemoteOutcome = 'ok' | 'unavailable' | 'refused';
export type RotationReason = 'start' | 'max_age' | 'max_uses' | 'remote_key_changed' | 'remote_refused';

/** What the gauges read when scraped. */
export interface HierarchyGaugeSource {
  remoteUp(): boolean;
  lastRemoteSuccess(): number | undefined;
  current(): { uses: number; createdAt: number; overdue: boolean };
  cacheEntries(): number;
}

export class HierarchyMetrics {
  private readonly calls: Counter<'operation' | 'outcome'>;
  private readonly rotations: Counter<'reason'>;
  private readonly cacheLookups: Counter<'result'>;

  constructor(registry: Registry, source: HierarchyGaugeSource) {
    const registers = [registry];
    this.calls = reuseMetric(registry, 'atrest_kms_plugin_remote_kek_calls_total', () => new Counter({
      name: 'atrest_kms_plugin_remote_kek_calls_total',
      help: 'Calls of the key hierarchy to the remote KEK (kmip, pkcs11) by operation (wrap: a new local KEK; unwrap: a decrypt-cache miss or a value from before the hierarchy; refresh: looking for a rotated remote key; verify: the periodic check that the remote still unwraps the current local KEK) and outcome (ok, unavailable, refused).',
      labelNames: ['operation', 'outcome'], registers,
    }));
    this.rotations = reuseMetric(registry, 'atrest_kms_plugin_local_kek_rotations_total', () => new Counter({
      name: 'atrest_kms_plugin_local_kek_rotations_total',
      help: 'Local KEKs made, by reason (start, max_age, max_uses, remote_key_changed, remote_refused).',
      labelNames: ['reason'], registers,
    }));
    this.cacheLookups = reuseMetric(registry, 'atrest_kms_plugin_local_kek_cache_lookups_total', () => new Counter({
      name: 'atrest_kms_plugin_local_kek_cache_lookups_total',
      help: 'Decrypts of key-hierarchy values by whether their local KEK was held (hit) or had to be unwrapped by the remote (miss).',
      labelNames: ['result'], registers,
    }));
    const gauge = (name: string, help: string, read: (g: Gauge) => void): void => {
      if (registry.getSingleMetric(name)) return;
      new Gauge({ name, help, registers, collect() { read(this); } });
    };
    gauge('atrest_kms_plugin_remote_kek_up', '1 while the last call to the remote KEK got an answer, 0 during an outage (the plugin keeps serving with the local KEK it holds).', (g) => g.set(source.remoteUp() ? 1 : 0));
    gauge('atrest_kms_plugin_remote_kek_last_success_timestamp_seconds', 'When a call to the remote KEK last succeeded (Unix seconds).', (g) => {
      const at = source.lastRemoteSuccess();
      if (at === undefined) g.reset();
      else g.set(at / 1000);
    });
    gauge('atrest_kms_plugin_local_kek_uses', 'Values the current local KEK has sealed.', (g) => g.set(source.current().uses));
    gauge('atrest_kms_plugin_local_kek_created_timestamp_seconds', 'When the current local KEK was made (Unix seconds).', (g) => g.set(source.current().createdAt / 1000));
    gauge('atrest_kms_plugin_local_kek_overdue', '1 while the current local KEK is past --local-kek-max-age or --local-kek-max-uses and no replacement could be made (remote unavailable).', (g) => g.set(source.current().overdue ? 1 : 0));
    gauge('atrest_kms_plugin_local_kek_cache_entries', 'Unwrapped local KEKs held for Decrypt.', (g) => g.set(source.cacheEntries()));
  }

  remoteCall(operation: RemoteOperation, outcome: RemoteOutcome): void {
    this.calls.inc({ operation, outcome });
  }

  rotated(reason: RotationReason): void {
    this.rotations.inc({ reason });
  }

  cacheLookup(hit: boolean): void {
    this.cacheLookups.inc({ result: hit ? 'hit' : 'miss' });
  }
}
