// kms v1 health probe (format.md §2.4): Encrypt(`ping`) then Decrypt of the result, cached 20 s on
// success and 3 s on failure, served as the `kms-provider-<i>` check.
import { messageOf } from '../errors.js';
import type { HealthCheck } from '../health.js';
import { KmsUnavailableError } from './errors.js';
import { isPluginUnreachable, kmsProviderLabel, unreachablePrefix, type KmsProviderRef } from './naming.js';
import { CachedProbe, type ProbeTtls } from './probe-cache.js';
import type { KmsV1Service } from './service.js';

export class KmsV1Probe {
  private readonly cached: CachedProbe;
  readonly providerName: string;
  private readonly ref: KmsProviderRef;

  constructor(provider: string | KmsProviderRef, private readonly service: KmsV1Service, ttls: ProbeTtls, now: () => number) {
    this.ref = typeof provider === 'string' ? { name: provider, apiVersion: 'v1' } : provider;
    this.providerName = this.ref.name;
    this.cached = new CachedProbe(() => this.probe(), ttls, now);
  }

  check(): Promise<void> {
    return this.cached.check();
  }

  healthCheck(index: number): HealthCheck {
    return { name: `kms-provider-${index}`, check: () => this.check() };
  }

  private async probe(): Promise<void> {
    let cipher: Uint8Array;
    try {
      cipher = await this.service.encrypt(PING);
    } catch (err) {
      throw this.failed('encrypt', err);
    }
    try {
      await this.service.decrypt(cipher);
    } catch (err) {
      throw this.failed('decrypt', err);
    }
  }

  /** kube's text, after the provider and its endpoint (naming.ts). */
  private failed(section: 'encrypt' | 'decrypt', err: unknown): KmsUnavailableError {
    return new KmsUnavailableError(
      `${kmsProviderLabel(this.ref)}: ${unreachablePrefix(err)}failed to perform ${section} section of the healthz check for KMS Provider ${this.providerName}, error: ${messageOf(err)}`,
      err instanceof KmsUnavailableError ? err.grpcCode : undefined, { cause: err, unreachable: isPluginUnreachable(err) });
  }
}

const PING = Buffer.from('ping');
