// The EncryptionConfiguration object model (apiserver.config.k8s.io/v1), after defaulting.
// Field names match the YAML/JSON schema exactly (format.md §3.2).

export interface Key {
  name: string;
  /** Standard base64 of the raw key bytes, as written in the file. */
  secret: string;
}

export interface KeysConfiguration {
  keys: Key[];
}

export interface KMSConfiguration {
  /** `v1` (default) or `v2`. */
  apiVersion: string;
  name: string;
  /** Only for v1: defaults to 1000; negative disables the cache. Undefined for v2. */
  cachesize?: number;
  endpoint: string;
  /** Per-call timeout in milliseconds (file: duration string, default `3s`). */
  timeoutMs: number;
}

export type ProviderConfiguration =
  | { aesgcm: KeysConfiguration }
  | { aescbc: KeysConfiguration }
  | { secretbox: KeysConfiguration }
  | { identity: Record<string, never> }
  | { kms: KMSConfiguration };

export interface ResourceConfiguration {
  resources: string[];
  providers: ProviderConfiguration[];
}

export interface EncryptionConfiguration {
  /** `apiserver.config.k8s.io/v1` or the legacy `v1`. */
  apiVersion: string;
  /** `EncryptionConfiguration` or the legacy `EncryptionConfig`. */
  kind: string;
  resources: ResourceConfiguration[];
}

/** A parsed group/resource pair: group '' is the core group, '*' a wildcard. */
export interface GroupResource {
  group: string;
  resource: string;
}

/** A loaded configuration file: the object, its path and its content hash (`sha256:<hex>`). */
export interface LoadedConfig {
  config: EncryptionConfiguration;
  path: string;
  contentHash: string;
}
