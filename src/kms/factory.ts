// The KMS side of one loaded EncryptionConfiguration: builds the inner kms v1 / v2 transformer for
// each `kms` provider entry (the config builder adds the `k8s:enc:kms:vN:<name>:` prefix), owns
// their gRPC connections and kms v2 status loops, and exposes kube-apiserver's health checks
// (`kms-provider-<i>` per provider, or one `kms-providers` when only v2 providers are used or
// automatic reload is on; format.md §2.4). `close()` stops loops and closes connections.
import type { KMSConfiguration } from '../config/types.js';
import { AtrestError, messageOf } from '../errors.js';
import type { HealthCheck } from '../health.js';
import type { Logger } from '../log.js';
import type { Registry } from '../metrics.js';
import { KMS_V1_DEFAULT_CACHE_SIZE, KmsV1Transformer } from '../transform/kmsv1.js';
import { DekSeedStateHolder, WRITE_DEK_SOURCE_MAX_TTL_MS } from '../transform/kmsv2/state.js';
import { DEK_SOURCE_CACHE_TTL_MS, KmsV2Transformer } from '../transform/kmsv2/transformer.js';
import type { KmsTransformerFactory, Transformer } from '../transform/types.js';
import { parseKmsEndpoint } from './endpoint.js';
import { KmsMetrics } from './metrics.js';
import type { KmsProviderRef } from './naming.js';
import { DEFAULT_PROBE_TTLS } from './probe-cache.js';
import { KmsV1Client } from './v1-client.js';
import { KmsV1Probe } from './v1-probe.js';
import { KmsV2Client } from './v2-client.js';
import { KmsV2Probe, combinedHealthCheck } from './v2-probe.js';
import { DEFAULT_STATUS_LOOP_INTERVALS, StatusLoop } from './v2-status-loop.js';

/** Every timing of the KMS side; kube-apiserver's values by default, smaller in tests. */
export interface KmsIntervals {
  /** Status poll while healthy (1 min). */
  statusHealthyMs: number;
  /** Status poll after a failure (10 s). */
  statusUnhealthyMs: number;
  /** Probe result reuse after success (20 s) / failure (3 s). */
  probePositiveTtlMs: number;
  probeNegativeTtlMs: number;
  /** Writes allowed this long after the last good Status (3 min). */
  writeDekMaxTtlMs: number;
  /** kms v2 decrypt-cache TTL (24 h; expired entries are still served until GC). */
  dekSourceCacheTtlMs: number;
  /** gRPC reconnect backoff bounds for the local socket. */
  initialReconnectBackoffMs: number;
  maxReconnectBackoffMs: number;
}

export const DEFAULT_KMS_INTERVALS: KmsIntervals = {
  statusHealthyMs: DEFAULT_STATUS_LOOP_INTERVALS.healthyMs,
  statusUnhealthyMs: DEFAULT_STATUS_LOOP_INTERVALS.unhealthyMs,
  probePositiveTtlMs: DEFAULT_PROBE_TTLS.positiveMs,
  probeNegativeTtlMs: DEFAULT_PROBE_TTLS.negativeMs,
  writeDekMaxTtlMs: WRITE_DEK_SOURCE_MAX_TTL_MS,
  dekSourceCacheTtlMs: DEK_SOURCE_CACHE_TTL_MS,
  initialReconnectBackoffMs: 100,
  maxReconnectBackoffMs: 1000,
};

export interface KmsProvidersOptions {
  /** Registry for kube-apiserver's envelope metrics; none registered when absent. */
  metrics?: Registry;
  log?: Logger;
  /** `--encryption-provider-config-automatic-reload`: always one `kms-providers` check. */
  reload?: boolean;
  intervals?: Partial<KmsIntervals>;
  /** Clock for expiry, TTLs and metrics timestamps (epoch ms). */
  now?: () => number;
  /** Hashed into the `apiserver_id_hash` metric label. */
  apiServerId?: string;
}

export interface KmsProviders {
  /** Builds the inner transformer of one `kms` provider entry; throws on a bad endpoint or apiVersion. */
  factory: KmsTransformerFactory;
  /** Every kms provider built so far (name, API version, endpoint: for messages). */
  providers(): KmsProviderRef[];
  /** The health checks to mount under /healthz and /readyz, per the rules of format.md §2.4. */
  healthChecks(): HealthCheck[];
  /** One check per kms provider, never combined (the tools ask about one provider at a time). */
  providerHealthChecks(): HealthCheck[];
  /** kms v2: probes Status now, past the probe cache (the tools' "did the key_id change during my run"). */
  refreshStatus(providerName: string): Promise<void>;
  /** Settles when every kms v2 provider built so far has finished its first Status probe. */
  ready(): Promise<void>;
  /** The key_id hash of a kms v2 provider's last valid Status answer; undefined before one, and for kms v1. */
  statusKeyIdHash(providerName: string): string | undefined;
  /**
   * How long to keep these providers open after a reload swapped them out (kube-apiserver's
   * KMSCloseGracePeriod): 2 × the sum of the kms timeouts, a v1 provider's counted twice.
   */
  closeGracePeriodMs(): number;
  /** Stops status loops and closes every plugin connection. */
  close(): Promise<void>;
}

class KmsConfigError extends AtrestError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KMS_CONFIG_INVALID', message, options);
  }
}

export function createKmsProviders(options: KmsProvidersOptions = {}): KmsProviders {
  const intervals: KmsIntervals = { ...DEFAULT_KMS_INTERVALS, ...options.intervals };
  const now = options.now ?? Date.now;
  const log = options.log;
  const metrics = options.metrics ? new KmsMetrics(options.metrics, { now, ...(options.apiServerId ? { apiServerId: options.apiServerId } : {}) }) : undefined;
  const ttls = { positiveMs: intervals.probePositiveTtlMs, negativeMs: intervals.probeNegativeTtlMs };
  const checks: HealthCheck[] = [];
  const closers: Array<() => void> = [];
  const primes: Promise<void>[] = [];
  const v2Probes = new Map<string, KmsV2Probe>();
  const refs: KmsProviderRef[] = [];
  let v1Used = false;
  let v2Used = false;
  let closed = false;
  let timeoutSumMs = 0;

  const clientOptions = (config: KMSConfiguration) => ({
    endpoint: config.endpoint,
    timeoutMs: config.timeoutMs,
    initialReconnectBackoffMs: intervals.initialReconnectBackoffMs,
    maxReconnectBackoffMs: intervals.maxReconnectBackoffMs,
    ...(metrics ? { onCall: (method: string, code: string, seconds: number) => metrics.kmsCall(config.name, method, code, seconds) } : {}),
  });

  function checkEndpoint(config: KMSConfiguration, label: string): void {
    try {
      const endpoint = parseKmsEndpoint(config.endpoint);
      if (endpoint.caveat) log?.warn({ provider: config.name }, endpoint.caveat);
    } catch (err) {
      throw new KmsConfigError(`could not configure ${label}-Plugin's probe "${config.name}", error: ${messageOf(err)}`, { cause: err });
    }
  }

  const factory: KmsTransformerFactory = (config: KMSConfiguration, index: number): Transformer => {
    if (closed) throw new KmsConfigError('the KMS providers of this configuration were closed');
    switch (config.apiVersion) {
      case 'v1': {
        checkEndpoint(config, 'KMSv1');
        const client = new KmsV1Client(clientOptions(config));
        closers.push(() => client.close());
        const ref: KmsProviderRef = { name: config.name, apiVersion: 'v1', endpoint: config.endpoint };
        refs.push(ref);
        const probe = new KmsV1Probe(ref, client, ttls, now);
        checks[index] = probe.healthCheck(index);
        v1Used = true;
        // The v1 health probe is an Encrypt and a Decrypt in a row.
        timeoutSumMs += 2 * config.timeoutMs;
        log?.warn({ provider: config.name }, 'KMSv1 is deprecated and will only receive security updates going forward. Use KMSv2 instead.');
        return new KmsV1Transformer({
          providerName: config.name,
          endpoint: config.endpoint,
          service: client,
          cacheSize: config.cachesize ?? KMS_V1_DEFAULT_CACHE_SIZE,
          ...(metrics ? { observer: metrics } : {}),
        });
      }
      case 'v2': {
        checkEndpoint(config, 'KMSv2');
        const client = new KmsV2Client(clientOptions(config));
        const state = new DekSeedStateHolder({ now, writeTtlMs: intervals.writeDekMaxTtlMs });
        const ref: KmsProviderRef = { name: config.name, apiVersion: 'v2', endpoint: config.endpoint };
        refs.push(ref);
        const probe = new KmsV2Probe(ref, client, state, ttls, now, metrics ?? {}, log);
        v2Probes.set(config.name, probe);
        const loop = new StatusLoop(config.name, () => probe.check(), { healthyMs: intervals.statusHealthyMs, unhealthyMs: intervals.statusUnhealthyMs }, log);
        state.setPriming(loop.primed);
        primes.push(loop.primed);
        closers.push(() => {
          loop.stop();
          client.close();
        });
        checks[index] = probe.healthCheck(index);
        v2Used = true;
        timeoutSumMs += config.timeoutMs;
        return new KmsV2Transformer({
          providerName: config.name,
          endpoint: config.endpoint,
          service: client,
          state,
          now,
          cacheTtlMs: intervals.dekSourceCacheTtlMs,
          ...(metrics ? { observer: metrics } : {}),
        });
      }
      default:
        throw new KmsConfigError(`could not configure KMS plugin "${config.name}", unsupported KMS API version "${config.apiVersion}"`);
    }
  };

  return {
    factory,
    providers(): KmsProviderRef[] {
      return [...refs];
    },
    healthChecks(): HealthCheck[] {
      const list = checks.filter((c): c is HealthCheck => c !== undefined);
      if (options.reload || (v2Used && !v1Used)) return [combinedHealthCheck(list)];
      return list;
    },
    providerHealthChecks(): HealthCheck[] {
      return checks.filter((c): c is HealthCheck => c !== undefined);
    },
    async refreshStatus(providerName: string): Promise<void> {
      await v2Probes.get(providerName)?.refresh();
    },
    async ready(): Promise<void> {
      await Promise.all(primes);
    },
    statusKeyIdHash(providerName: string): string | undefined {
      return v2Probes.get(providerName)?.keyIdHash;
    },
    closeGracePeriodMs(): number {
      return 2 * timeoutSumMs;
    },
    async close(): Promise<void> {
      closed = true;
      for (const close of closers.splice(0)) close();
    },
  };
}
