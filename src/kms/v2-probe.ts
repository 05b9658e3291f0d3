// kms v2 Status probe and key_id rotation (format.md §2.2, §2.4, §2.5; kube-apiserver
// `kmsv2PluginProbe`). One probe per provider serves both the status loop and the health check:
// Status, then the response checks (healthz `ok`, version `v2`/`v2beta1` and never changing, a
// valid key_id), then — whenever the key_id is valid — extend or rotate the DEK-seed state.
// Results are cached 20 s / 3 s like kube-apiserver's.
import { randomUUID } from 'node:crypto';
import { messageOf } from '../errors.js';
import type { HealthCheck } from '../health.js';
import type { Logger } from '../log.js';
import type { DekSeedStateHolder } from '../transform/kmsv2/state.js';
import { checkKeyId, keyIdHash } from '../transform/kmsv2/validation.js';
import { KmsResponseError, KmsUnavailableError, aggregateMessage } from './errors.js';
import { isPluginUnreachable, kmsProviderLabel, unreachablePrefix, type KmsProviderRef } from './naming.js';
import { CachedProbe, type ProbeTtls } from './probe-cache.js';
import type { KmsV2Service } from './service.js';

export interface KmsV2ProbeObserver {
  keyIdFromStatus?(providerName: string, keyId: string): void;
  invalidKeyIdFromStatus?(providerName: string, error: string): void;
  /** A new DEK seed became the write seed (epoch ms). */
  dekSeedRotated?(providerName: string, atMs: number): void;
}

export class KmsV2Probe {
  private readonly cached: CachedProbe;
  /** The first accepted Status version; it must not change afterwards. */
  private version = '';
  private lastKeyId: string | undefined;
  readonly providerName: string;
  private readonly ref: KmsProviderRef;

  constructor(
    provider: string | KmsProviderRef,
    private readonly service: KmsV2Service,
    private readonly state: DekSeedStateHolder,
    ttls: ProbeTtls,
    private readonly now: () => number,
    private readonly observer: KmsV2ProbeObserver = {},
    private readonly log?: Logger,
  ) {
    this.ref = typeof provider === 'string' ? { name: provider, apiVersion: 'v2' } : provider;
    this.providerName = this.ref.name;
    this.cached = new CachedProbe(() => this.probe(), ttls, now);
  }

  check(): Promise<void> {
    return this.cached.check();
  }

  /** Probes now, whatever the cache holds (and caches the result). */
  refresh(): Promise<void> {
    return this.cached.refresh();
  }

  /** The hash of the key_id of the last Status answer with a valid one (kube's `key_id_hash` label); undefined before one. */
  get keyIdHash(): string | undefined {
    return this.lastKeyId === undefined ? undefined : keyIdHash(this.lastKeyId);
  }

  healthCheck(index: number): HealthCheck {
    return { name: `kms-provider-${index}`, check: () => this.check() };
  }

  private async probe(): Promise<void> {
    let status;
    try {
      status = await this.service.status();
    } catch (err) {
      // Writes fail once the seed expires: their error says why the Status calls failed.
      this.state.noteStatusFailure(err);
      // kube's text, after the provider and its endpoint (naming.ts).
      throw new KmsUnavailableError(`${kmsProviderLabel(this.ref)}: ${unreachablePrefix(err)}failed to perform status section of the healthz check for KMS Provider ${this.providerName}, error: ${messageOf(err)}`,
        err instanceof KmsUnavailableError ? err.grpcCode : undefined, { cause: err, unreachable: isPluginUnreachable(err) });
    }
    this.state.noteStatusFailure(undefined);
    const errs: string[] = [];
    if (status.healthz !== 'ok') errs.push(`got unexpected healthz status: ${status.healthz}`);
    if (status.version !== 'v2' && status.version !== 'v2beta1') {
      errs.push(`expected KMSv2 API version v2, got ${status.version}`);
    } else {
      if (!this.version) this.version = status.version;
      if (this.version !== status.version) {
        errs.push(`KMSv2 API version should not change after the initial status response version ${this.version}, got ${status.version}`);
      }
    }
    const keyIdErr = checkKeyId(status.keyId);
    if (keyIdErr) {
      this.observer.invalidKeyIdFromStatus?.(this.providerName, keyIdErr.code);
      errs.push(`got invalid KMSv2 KeyID hash "${keyIdHash(status.keyId)}": ${keyIdErr.message}`);
    } else {
      this.lastKeyId = status.keyId;
      this.observer.keyIdFromStatus?.(this.providerName, status.keyId);
      try {
        const uid = randomUUID();
        const { rotated } = await this.state.rotate(this.service, status.keyId, uid);
        if (rotated) {
          this.observer.dekSeedRotated?.(this.providerName, this.now());
          this.log?.info({ provider: this.providerName, uid, keyIdHash: keyIdHash(status.keyId) }, 'kms v2 DEK seed rotated');
        }
      } catch (err) {
        errs.push(messageOf(err));
      }
    }
    if (errs.length) throw new KmsResponseError(`${kmsProviderLabel(this.ref)}: kmsv2 Provider ${this.providerName} is not healthy, error: ${aggregateMessage(errs)}`);
  }
}

/** The single `kms-providers` check: every probe, errors as `<name>: <err>` aggregated. */
export function combinedHealthCheck(checks: readonly HealthCheck[]): HealthCheck {
  return {
    name: 'kms-providers',
    async check(): Promise<void> {
      const errs: string[] = [];
      // Serially, as kube-apiserver does (its close grace period assumes it).
      for (const c of checks) {
        try {
          await c.check();
        } catch (err) {
          errs.push(`${c.name}: ${messageOf(err)}`);
        }
      }
      if (errs.length) throw new KmsUnavailableError(aggregateMessage(errs));
    },
  };
}
