// EncryptionConfiguration → transformers (format.md §0, §3.3), kube-apiserver's
// `prefixTransformersAndProbes` without the I/O: every provider entry of the file is built once, in
// file order (kms entries through the caller's factory, numbered 0.. over the whole file), and each
// resource gets the prefix chain of its provider list. Resources no rule names get identity.
import { buildResourceTable, listProviders } from '../config/resources.js';
import { decodeKeySecret } from '../config/secret.js';
import type { EncryptionConfiguration, GroupResource, KMSConfiguration, Key, ProviderConfiguration } from '../config/types.js';
import { messageOf } from '../errors.js';
import { AesCbcTransformer, AESCBC_PREFIX } from './aescbc.js';
import { AesGcmTransformer, AESGCM_PREFIX } from './aesgcm.js';
import { TransformerConfigError } from './errors.js';
import { IdentityTransformer } from './identity.js';
import {
  ERR_NO_MATCHING_AES_KEY, ERR_NO_MATCHING_PREFIX, ERR_NO_MATCHING_SECRETBOX_KEY, PrefixTransformer, type PrefixEntry,
} from './prefix.js';
import { SecretboxTransformer, SECRETBOX_PREFIX } from './secretbox.js';
import type { KmsTransformerFactory, Transformer, TransformerSet } from './types.js';

export const KMS_V1_PREFIX = 'k8s:enc:kms:v1:';
export const KMS_V2_PREFIX = 'k8s:enc:kms:v2:';

export interface BuildTransformersOptions {
  /** Builds the inner transformer of each `kms` entry; without it a kms entry is a configuration error. */
  kms?: KmsTransformerFactory;
}

/** The full prefix a kms provider writes: `k8s:enc:kms:v1:<name>:` or `k8s:enc:kms:v2:<name>:`. */
export function kmsPrefix(config: Pick<KMSConfiguration, 'apiVersion' | 'name'>): string {
  return `${config.apiVersion === 'v2' ? KMS_V2_PREFIX : KMS_V1_PREFIX}${config.name}:`;
}

export function buildTransformers(config: EncryptionConfiguration, options: BuildTransformersOptions = {}): TransformerSet {
  const table = buildResourceTable(config);
  // One transformer per provider element of the file, built in file order (kms clients too).
  const built = new Map<ProviderConfiguration, PrefixEntry>();
  for (const ref of listProviders(config)) {
    if (!built.has(ref.provider)) built.set(ref.provider, buildProviderEntry(ref.provider, ref.kmsIndex ?? -1, options));
  }

  const unlisted = new IdentityTransformer({ nameStorageKey: true });
  // Keyed by the rule's provider list (the table hands out one array per rule), so the number of
  // chains is bounded by the rules of the file, whatever resource names callers ask for.
  const chains = new Map<readonly ProviderConfiguration[], Transformer>();

  return {
    forResource(gr: GroupResource): Transformer {
      const providers = table.providersFor(gr);
      if (providers === undefined || providers.length === 0) return unlisted;
      let chain = chains.get(providers);
      if (chain === undefined) {
        chain = new PrefixTransformer(providers.map((p) => entryFor(built, p)), {
          defaultError: ERR_NO_MATCHING_PREFIX,
          defaultErrorCode: 'NO_MATCHING_PREFIX',
          nameStorageKey: true,
        });
        chains.set(providers, chain);
      }
      return chain;
    },
    async close(): Promise<void> {
      // Nothing here holds I/O: kms connections belong to the factory's owner.
      chains.clear();
    },
  };
}

function entryFor(built: Map<ProviderConfiguration, PrefixEntry>, provider: ProviderConfiguration): PrefixEntry {
  const entry = built.get(provider);
  if (entry === undefined) {
    throw new TransformerConfigError('TRANSFORMER_CONFIG_INVALID', 'the resource table returned a provider that is not part of the configuration');
  }
  return entry;
}

/** The (prefix, transformer) entry of one provider element. `kmsIndex`: its position among the file's kms entries. */
export function buildProviderEntry(provider: ProviderConfiguration, kmsIndex: number, options: BuildTransformersOptions = {}): PrefixEntry {
  if ('identity' in provider) return { prefix: Buffer.alloc(0), transformer: new IdentityTransformer() };
  if ('aescbc' in provider) {
    return aesEntry(AESCBC_PREFIX, provider.aescbc.keys, (key, name) => new AesCbcTransformer(key, name));
  }
  if ('aesgcm' in provider) {
    return aesEntry(AESGCM_PREFIX, provider.aesgcm.keys, (key, name) => new AesGcmTransformer(key, name));
  }
  if ('secretbox' in provider) return secretboxEntry(provider.secretbox.keys);
  if ('kms' in provider) return kmsEntry(provider.kms, kmsIndex, options.kms);
  throw configError('provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity');
}

function aesEntry(prefix: string, keys: readonly Key[], make: (key: Buffer, name: string) => Transformer): PrefixEntry {
  if (keys.length === 0) throw configError('aes provider has no valid keys');
  checkKeyFields(keys);
  const entries = keys.map((k) => {
    const raw = secretOf(k);
    try {
      return { prefix: Buffer.from(`${k.name}:`), transformer: make(raw, k.name) };
    } catch (err) {
      throw configError(`error while creating cipher for named key ${k.name}: ${messageOf(err)}`, err);
    } finally {
      raw.fill(0);
    }
  });
  return {
    prefix: Buffer.from(prefix),
    transformer: new PrefixTransformer(entries, { defaultError: ERR_NO_MATCHING_AES_KEY, defaultErrorCode: 'NO_MATCHING_KEY' }),
  };
}

function secretboxEntry(keys: readonly Key[]): PrefixEntry {
  if (keys.length === 0) throw configError('secretbox provider has no valid keys');
  checkKeyFields(keys);
  const entries = keys.map((k) => {
    const raw = secretOf(k);
    try {
      if (raw.length !== 32) throw configError(`expected key size 32 for secretbox provider, got ${raw.length}`);
      return { prefix: Buffer.from(`${k.name}:`), transformer: new SecretboxTransformer(raw, k.name) };
    } finally {
      raw.fill(0);
    }
  });
  return {
    prefix: Buffer.from(SECRETBOX_PREFIX),
    transformer: new PrefixTransformer(entries, { defaultError: ERR_NO_MATCHING_SECRETBOX_KEY, defaultErrorCode: 'NO_MATCHING_KEY' }),
  };
}

function kmsEntry(config: KMSConfiguration, index: number, factory: KmsTransformerFactory | undefined): PrefixEntry {
  if (config.apiVersion !== 'v1' && config.apiVersion !== 'v2') {
    throw configError(`could not configure KMS plugin "${config.name}", unsupported KMS API version "${config.apiVersion}"`);
  }
  if (factory === undefined) {
    throw new TransformerConfigError('KMS_CLIENT_REQUIRED',
      `kms ${config.apiVersion} provider "${config.name}" needs a KMS plugin connection, and none was set up for this configuration`);
  }
  return { prefix: Buffer.from(kmsPrefix(config)), transformer: factory(config, index) };
}

/** kube-apiserver checks every key's name and secret before decoding any of them. */
function checkKeyFields(keys: readonly Key[]): void {
  for (const k of keys) {
    if (k.name === '') throw configError('key with invalid name provided');
    if (k.secret === '') throw configError(`key ${k.name} has no provided secret`);
  }
}

function secretOf(k: Key): Buffer {
  const raw = decodeKeySecret(k.secret);
  // Never the secret itself, only that it is not standard base64.
  if (raw === undefined) throw configError(`could not obtain secret for named key ${k.name}: illegal base64 data`);
  return raw;
}

function configError(message: string, cause?: unknown): TransformerConfigError {
  return new TransformerConfigError('TRANSFORMER_CONFIG_INVALID', message, cause === undefined ? undefined : { cause });
}
