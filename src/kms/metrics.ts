// KMS envelope metrics with kube-apiserver's names and labels (k8s.io/apiserver
// `envelope/metrics`, `storage/value` metrics), registered into the Registry passed in (never the
// global one). key_ids appear only as `sha256:` hashes. Registering twice into one registry (a
// config reload) reuses the existing collectors.
import { createHash } from 'node:crypto';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { reuseMetric } from '../metrics.js';
import { keyIdHash } from '../transform/kmsv2/validation.js';
import type { KmsV1TransformerObserver } from '../transform/kmsv1.js';
import type { KmsV2TransformerObserver } from '../transform/kmsv2/transformer.js';

function exponentialBuckets(start: number, factor: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start * factor ** i);
}

export class KmsMetrics implements KmsV1TransformerObserver, KmsV2TransformerObserver {
  private readonly latency: Histogram<'provider_name' | 'method_name' | 'grpc_status_code'>;
  private readonly keyIdTotal: Counter<'transformation_type' | 'provider_name' | 'key_id_hash' | 'apiserver_id_hash'>;
  private readonly keyIdLast: Gauge<'transformation_type' | 'provider_name' | 'key_id_hash' | 'apiserver_id_hash'>;
  private readonly keyIdStatusLast: Gauge<'provider_name' | 'key_id_hash' | 'apiserver_id_hash'>;
  private readonly invalidKeyId: Counter<'provider_name' | 'error'>;
  private readonly dekSourceCacheSizeGauge: Gauge<'provider_name'>;
  private readonly dekCacheFill: Gauge;
  private readonly interArrival: Histogram<'transformation_type'>;
  private readonly cacheMisses: Counter;
  private readonly dekSeedCreated: Gauge<'provider_name'>;
  private readonly apiServerIdHash: string;
  private readonly lastArrival = new Map<string, number>();
  private readonly hashes = new Map<string, string>();
  private readonly now: () => number;

  constructor(registry: Registry, options: { apiServerId?: string; now?: () => number } = {}) {
    const registers = [registry];
    this.now = options.now ?? Date.now;
    this.apiServerIdHash = options.apiServerId ? `sha256:${createHash('sha256').update(options.apiServerId).digest('hex')}` : '';
    this.latency = reuseMetric(registry, 'apiserver_envelope_encryption_kms_operations_latency_seconds', () => new Histogram({
      name: 'apiserver_envelope_encryption_kms_operations_latency_seconds',
      help: 'KMS operation duration with gRPC error code status total.',
      labelNames: ['provider_name', 'method_name', 'grpc_status_code'], buckets: exponentialBuckets(0.001, 2, 20), registers,
    }));
    this.keyIdTotal = reuseMetric(registry, 'apiserver_envelope_encryption_key_id_hash_total', () => new Counter({
      name: 'apiserver_envelope_encryption_key_id_hash_total',
      help: 'Number of times a keyID is used split by transformation type, provider, and apiserver identity.',
      labelNames: ['transformation_type', 'provider_name', 'key_id_hash', 'apiserver_id_hash'], registers,
    }));
    this.keyIdLast = reuseMetric(registry, 'apiserver_envelope_encryption_key_id_hash_last_timestamp_seconds', () => new Gauge({
      name: 'apiserver_envelope_encryption_key_id_hash_last_timestamp_seconds',
      help: 'The last time in seconds when a keyID was used.',
      labelNames: ['transformation_type', 'provider_name', 'key_id_hash', 'apiserver_id_hash'], registers,
    }));
    this.keyIdStatusLast = reuseMetric(registry, 'apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds', () => new Gauge({
      name: 'apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds',
      help: 'The last time in seconds when a keyID was returned by the Status RPC call.',
      labelNames: ['provider_name', 'key_id_hash', 'apiserver_id_hash'], registers,
    }));
    this.invalidKeyId = reuseMetric(registry, 'apiserver_envelope_encryption_invalid_key_id_from_status_total', () => new Counter({
      name: 'apiserver_envelope_encryption_invalid_key_id_from_status_total',
      help: 'Number of times an invalid keyID is returned by the Status RPC call split by error.',
      labelNames: ['provider_name', 'error'], registers,
    }));
    this.dekSourceCacheSizeGauge = reuseMetric(registry, 'apiserver_envelope_encryption_dek_source_cache_size', () => new Gauge({
      name: 'apiserver_envelope_encryption_dek_source_cache_size',
      help: 'Number of records in data encryption key (DEK) source cache. On a restart, this value is an approximation of the number of decrypt RPC calls the server will make to the KMS plugin.',
      labelNames: ['provider_name'], registers,
    }));
    this.dekCacheFill = reuseMetric(registry, 'apiserver_envelope_encryption_dek_cache_fill_percent', () => new Gauge({
      name: 'apiserver_envelope_encryption_dek_cache_fill_percent',
      help: 'Percent of the cache slots currently occupied by cached DEKs.', registers,
    }));
    this.interArrival = reuseMetric(registry, 'apiserver_envelope_encryption_dek_cache_inter_arrival_time_seconds', () => new Histogram({
      name: 'apiserver_envelope_encryption_dek_cache_inter_arrival_time_seconds',
      help: 'Time (in seconds) of inter arrival of transformation requests.',
      labelNames: ['transformation_type'], buckets: exponentialBuckets(60, 2, 10), registers,
    }));
    this.cacheMisses = reuseMetric(registry, 'apiserver_storage_envelope_transformation_cache_misses_total', () => new Counter({
      name: 'apiserver_storage_envelope_transformation_cache_misses_total',
      help: 'Total number of cache misses while accessing key decryption key(KEK).', registers,
    }));
    // Not in kube-apiserver: when the current write DEK seed was made, for rotation-age alerts.
    this.dekSeedCreated = reuseMetric(registry, 'atrest_envelope_encryption_dek_seed_created_timestamp_seconds', () => new Gauge({
      name: 'atrest_envelope_encryption_dek_seed_created_timestamp_seconds',
      help: 'When the kms v2 provider\'s current write DEK seed was generated (Unix seconds); a new seed is made at start and whenever the plugin reports a new key_id.',
      labelNames: ['provider_name'], registers,
    }));
  }

  /** One gRPC call to a plugin (`method` is the full method name, e.g. `/v2.KeyManagementService/Encrypt`). */
  kmsCall(providerName: string, method: string, code: string, seconds: number): void {
    this.latency.observe({ provider_name: providerName, method_name: method, grpc_status_code: code }, seconds);
  }

  private hash(keyId: string): string {
    let h = this.hashes.get(keyId);
    if (h === undefined) {
      h = keyIdHash(keyId);
      if (this.hashes.size > 256) this.hashes.clear();
      this.hashes.set(keyId, h);
    }
    return h;
  }

  keyIdUsed(direction: 'to_storage' | 'from_storage', providerName: string, keyId: string): void {
    const labels = { transformation_type: direction, provider_name: providerName, key_id_hash: this.hash(keyId), apiserver_id_hash: this.apiServerIdHash };
    this.keyIdTotal.inc(labels);
    this.keyIdLast.set(labels, this.now() / 1000);
  }

  keyIdFromStatus(providerName: string, keyId: string): void {
    this.keyIdStatusLast.set({ provider_name: providerName, key_id_hash: this.hash(keyId), apiserver_id_hash: this.apiServerIdHash }, this.now() / 1000);
  }

  invalidKeyIdFromStatus(providerName: string, error: string): void {
    this.invalidKeyId.inc({ provider_name: providerName, error });
  }

  dekSourceCacheSize(providerName: string, size: number): void {
    this.dekSourceCacheSizeGauge.set({ provider_name: providerName }, size);
  }

  dekSeedRotated(providerName: string, atMs: number): void {
    this.dekSeedCreated.set({ provider_name: providerName }, atMs / 1000);
  }

  cacheMiss(): void {
    this.cacheMisses.inc();
  }

  cacheFill(percent: number): void {
    this.dekCacheFill.set(percent);
  }

  arrival(direction: 'to_storage' | 'from_storage'): void {
    const now = this.now();
    const last = this.lastArrival.get(direction) ?? now;
    this.interArrival.observe({ transformation_type: direction }, (now - last) / 1000);
    this.lastArrival.set(direction, now);
  }
}

/**
 * `apiserver_storage_transformation_operations_total` and `_duration_seconds`, for whoever wraps
 * transformers (the store): `record('to_storage', 'k8s:enc:kms:v2:', seconds, err)`. status is the
 * gRPC code name of the error (`OK`, or `Unknown` for non-gRPC errors) as kube-apiserver labels it.
 */
export function createTransformationMetrics(registry: Registry): {
  record(type: 'to_storage' | 'from_storage', transformerPrefix: string, seconds: number, err?: unknown): void;
} {
  const registers = [registry];
  const total = reuseMetric(registry, 'apiserver_storage_transformation_operations_total', () => new Counter({
    name: 'apiserver_storage_transformation_operations_total',
    help: 'Total number of transformations. Successful transformation will have a status \'OK\' and a varied status string when the transformation fails. This status and transformation_type fields may be used for alerting on encryption/decryption failure using transformation_type from_storage for decryption and to_storage for encryption',
    labelNames: ['transformation_type', 'transformer_prefix', 'status'], registers,
  })) as Counter<'transformation_type' | 'transformer_prefix' | 'status'>;
  const duration = reuseMetric(registry, 'apiserver_storage_transformation_duration_seconds', () => new Histogram({
    name: 'apiserver_storage_transformation_duration_seconds',
    help: 'Latencies in seconds of value transformation operations.',
    labelNames: ['transformation_type', 'transformer_prefix'], buckets: exponentialBuckets(5e-6, 2, 25), registers,
  })) as Histogram<'transformation_type' | 'transformer_prefix'>;
  return {
    record(type, transformerPrefix, seconds, err) {
      const status = err === undefined ? 'OK' : grpcCodeOf(err) ?? 'Unknown';
      total.inc({ transformation_type: type, transformer_prefix: transformerPrefix, status });
      duration.observe({ transformation_type: type, transformer_prefix: transformerPrefix }, seconds);
    },
  };
}

/** The gRPC code name carried by `err` or any error in its cause chain (like Go's status.Code on a %w chain). */
function grpcCodeOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 10; depth++) {
    const code = (e as { grpcCode?: unknown }).grpcCode;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
