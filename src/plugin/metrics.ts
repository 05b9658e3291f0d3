// Prometheus metrics of the KMS plugin, registered into the Registry passed in (never the global
// one): operations by API version, method and outcome (the gRPC status code name), their latency,
// the current key_id (as `sha256:<hex>` only), backend refresh failures and rotations, and the
// connections whose HTTP/2 :authority the edge repaired (src/plugin/http2-edge).
import { createHash } from 'node:crypto';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { reuseMetric } from '../metrics.js';

/** `sha256:<hex of SHA-256(keyId)>`, as kube-apiserver shows key_ids; empty for an empty key_id. */
export function keyIdHash(keyId: string): string {
  return keyId === '' ? '' : `sha256:${createHash('sha256').update(keyId).digest('hex')}`;
}

export class PluginMetrics {
  private readonly operations: Counter<'api_version' | 'method' | 'outcome'>;
  private readonly latency: Histogram<'api_version' | 'method'>;
  private readonly keyId: Gauge<'key_id_hash'>;
  private readonly keyCreated: Gauge;
  private readonly refreshFailures: Counter;
  private readonly rotations: Counter;
  private readonly authorityRepairs: Counter;
  private currentHash: string | undefined;

  constructor(registry: Registry) {
    const registers = [registry];
    this.operations = reuseMetric(registry, 'atrest_kms_plugin_operations_total', () => new Counter({
      name: 'atrest_kms_plugin_operations_total',
      help: 'KMS plugin gRPC calls by API version (v1beta1, v2, v2alpha1), method and outcome (gRPC status code name).',
      labelNames: ['api_version', 'method', 'outcome'], registers,
    }));
    this.latency = reuseMetric(registry, 'atrest_kms_plugin_operation_duration_seconds', () => new Histogram({
      name: 'atrest_kms_plugin_operation_duration_seconds',
      help: 'KMS plugin gRPC call duration by API version and method.',
      labelNames: ['api_version', 'method'],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }));
    this.keyId = reuseMetric(registry, 'atrest_kms_plugin_current_key_id_hash_info', () => new Gauge({
      name: 'atrest_kms_plugin_current_key_id_hash_info',
      help: 'Always 1, labelled with the sha256 hash of the key_id new ciphertexts are wrapped with.',
      labelNames: ['key_id_hash'], registers,
    }));
    this.keyCreated = reuseMetric(registry, 'atrest_kms_plugin_current_key_created_timestamp_seconds', () => new Gauge({
      name: 'atrest_kms_plugin_current_key_created_timestamp_seconds',
      help: 'When the current KEK version was created (Unix seconds), for rotation-age alerts; absent when the backend does not record it.',
      registers,
    }));
    // A gauge without labels starts (and resets) at 0, which a rotation-age alert would read as
    // "created in 1970": keep it absent until a creation time is known.
    this.keyCreated.remove();
    this.refreshFailures = reuseMetric(registry, 'atrest_kms_plugin_backend_refresh_failures_total', () => new Counter({
      name: 'atrest_kms_plugin_backend_refresh_failures_total',
      help: 'Backend refreshes (looking for a rotated KEK) that failed.',
      registers,
    }));
    this.rotations = reuseMetric(registry, 'atrest_kms_plugin_key_rotations_total', () => new Counter({
      name: 'atrest_kms_plugin_key_rotations_total',
      help: 'Times the current key_id changed while serving.',
      registers,
    }));
    this.authorityRepairs = reuseMetric(registry, 'atrest_kms_plugin_authority_repaired_connections_total', () => new Counter({
      name: 'atrest_kms_plugin_authority_repaired_connections_total',
      help: 'Connections whose HTTP/2 :authority Node\'s HTTP/2 would refuse (a socket path, as kube-apiserver 1.27/1.28 send; empty; absent) and the plugin rewrote to localhost.',
      registers,
    }));
  }

  authorityRepaired(): void {
    this.authorityRepairs.inc();
  }

  observe(apiVersion: string, method: string, outcome: string, seconds: number): void {
    this.operations.inc({ api_version: apiVersion, method, outcome });
    this.latency.observe({ api_version: apiVersion, method }, seconds);
  }

  setCurrentKeyId(keyId: string, rotated: boolean, createdAtMs?: number): void {
    const hash = keyIdHash(keyId);
    if (hash === this.currentHash) return;
    if (createdAtMs === undefined) this.keyCreated.remove();
    else this.keyCreated.set(createdAtMs / 1000);
    this.keyId.reset();
    this.keyId.set({ key_id_hash: hash }, 1);
    this.currentHash = hash;
    if (rotated) this.rotations.inc();
  }

  refreshFailed(): void {
    this.refreshFailures.inc();
  }
}
