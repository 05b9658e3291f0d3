// Defaulting of a decoded configuration (k8s.io/apiserver/pkg/apis/apiserver/v1/defaults.go):
// kms `apiVersion` v1, `timeout` 3s, and `cachesize` 1000 only when the apiVersion is v1 (a v2
// provider keeps it unset; a set value is a validation error there).
import type { DecodedConfig, DecodedKMS, DecodedKeys, DecodedProvider } from './decode.js';
import { nanosToMillis } from './go-duration.js';
import type { EncryptionConfiguration, KMSConfiguration, KeysConfiguration, ProviderConfiguration } from './types.js';

export const DEFAULT_KMS_API_VERSION = 'v1';
export const DEFAULT_KMS_CACHE_SIZE = 1000;
export const DEFAULT_KMS_TIMEOUT_NS = 3_000_000_000n;

function keys(k: DecodedKeys): KeysConfiguration {
  return { keys: k.keys.map((key) => ({ name: key.name, secret: key.secret })) };
}

function kms(k: DecodedKMS): KMSConfiguration {
  const apiVersion = k.apiVersion === '' ? DEFAULT_KMS_API_VERSION : k.apiVersion;
  const out: KMSConfiguration = {
    apiVersion,
    name: k.name,
    endpoint: k.endpoint,
    timeoutMs: nanosToMillis(k.timeoutNs ?? DEFAULT_KMS_TIMEOUT_NS),
  };
  if (k.cachesize !== undefined) out.cachesize = k.cachesize;
  else if (apiVersion === 'v1') out.cachesize = DEFAULT_KMS_CACHE_SIZE;
  return out;
}

/** A providers element with defaults; as decoded it may hold none or several providers, which
 * validation rejects, so the result is only a ProviderConfiguration once validated. */
function provider(p: DecodedProvider): ProviderConfiguration {
  const out: Record<string, unknown> = {};
  if (p.aesgcm !== undefined) out.aesgcm = keys(p.aesgcm);
  if (p.aescbc !== undefined) out.aescbc = keys(p.aescbc);
  if (p.secretbox !== undefined) out.secretbox = keys(p.secretbox);
  if (p.identity !== undefined) out.identity = {};
  if (p.kms !== undefined) out.kms = kms(p.kms);
  return out as ProviderConfiguration;
}

export function applyDefaults(config: DecodedConfig): EncryptionConfiguration {
  return {
    apiVersion: config.apiVersion,
    kind: config.kind,
    resources: config.resources.map((r) => ({ resources: [...r.resources], providers: r.providers.map(provider) })),
  };
}
