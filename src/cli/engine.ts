// Opening what the operator tools over stored data (`verify`, `rewrite`, `status`, `decrypt`) work
// on: the KMS providers and the transformers of one EncryptionConfiguration, the resource selection,
// and (openEngine) the store. Each kms provider gets its own KmsProviders, so a tool can ask about
// the health of exactly one provider: the one it writes with, or the one a stored value names
// (src/storage/checked-read.ts). `status --no-verify` opens no store (openKmsEngine).
import { existsSync } from 'node:fs';
import { loadEncryptionConfigFile } from '../config/load.js';
import { groupResourceString } from '../config/group-resource.js';
import { buildResourceTable, usesKms } from '../config/resources.js';
import type { EncryptionConfiguration, GroupResource, KMSConfiguration, ProviderConfiguration } from '../config/types.js';
import { messageOf } from '../errors.js';
import type { HealthCheck } from '../health.js';
import type { KmsIntervals, KmsProviders } from '../kms/factory.js';
import type { Logger } from '../log.js';
import { StoreError } from '../storage/errors.js';
import { describeStoreLocation, embeddedStoreFile, openStore, splitEtcdServers, type StoreLocation } from '../storage/open.js';
import type { Store } from '../storage/types.js';
import { buildTransformers } from '../transform/build.js';
import type { KmsTransformerFactory, TransformerSet } from '../transform/types.js';
import type { KmsProviderProbe } from '../storage/checked-read.js';
import { isSelected, parseResourceSelection, ToolUsageError, type EngineConfigFlags, type EngineFlags, type StoreFlags } from './engine-options.js';

/** The configuration side of a tool: transformers, KMS providers, resource selection; no store. */
export interface KmsEngine {
  transformers: TransformerSet;
  /** Which resources the tool looks at: `--resources`, else those the configuration names. */
  selects(gr: GroupResource): boolean;
  /** The resources the configuration names, whatever `--resources` says (`atrest rotate`'s retirement check). */
  configures(gr: GroupResource): boolean;
  /**
   * The write provider (first provider) of each selected resource that is a kms provider, with its
   * own health check (the kms v2 Status probe, or the v1 Encrypt+Decrypt probe) and, for kms v2,
   * the key_id hash of its last valid Status answer.
   */
  writeKmsProviders(): WriteKmsProvider[];
  /** Every kms provider of the configuration (read ones too), each with its own health check. */
  kmsProviders(): KmsProviderProbe[];
  /** The configuration's resource rules in precedence order: each resource and its providers (the first writes). */
  resourceRules(): Array<{ resource: string; providers: readonly ProviderConfiguration[] }>;
  /** Settles when every kms v2 provider has had its first Status answer (or failure). */
  ready(): Promise<void>;
  close(): Promise<void>;
}

export interface Engine extends KmsEngine {
  store: Store;
}

export interface WriteKmsProvider {
  resource: string;
  name: string;
  apiVersion: string;
  endpoint: string;
  health: HealthCheck;
  /** kms v2: the key_id hash of the last valid Status answer (undefined before one, and for v1). */
  keyIdHash(): string | undefined;
  /** kms v2: asks Status again now (past the probe cache), so keyIdHash() is fresh; rejects like the health check. */
  refresh(): Promise<void>;
}

export interface OpenEngineOptions {
  /** Embedded store: open read-only (verify) or for writing (rewrite; the store file must exist either way). */
  readonly: boolean;
  log?: Logger;
  kmsIntervals?: Partial<KmsIntervals>;
}

/** Loads the configuration, checks the store flags, opens the store and builds the transformers. Config and flag problems throw ToolUsageError. */
export async function openEngine(flags: EngineFlags, options: OpenEngineOptions): Promise<Engine> {
  const loc = storeLocation(flags, options.readonly);
  const kms = await openKmsEngine(flags, options);
  let store: Store;
  try {
    store = await openToolStore(loc);
  } catch (err) {
    await kms.close();
    throw err;
  }
  return {
    ...kms,
    store,
    async close() {
      try {
        await store.close();
      } finally {
        await kms.close();
      }
    },
  };
}

/** Where the store flags point; flag problems (no embedded store there, half a TLS pair) throw ToolUsageError. */
export function storeLocation(flags: StoreFlags, readonly: boolean): StoreLocation {
  const useEtcd = flags.etcdServers !== undefined && splitEtcdServers(flags.etcdServers).length > 0;
  if (!useEtcd && !existsSync(embeddedStoreFile(flags.dataDir))) {
    throw new ToolUsageError(`no embedded store at ${embeddedStoreFile(flags.dataDir)} (check --data-dir, or give --etcd-servers)`);
  }
  if (Boolean(flags.etcdCertfile) !== Boolean(flags.etcdKeyfile)) {
    throw new ToolUsageError('--etcd-certfile and --etcd-keyfile must be given together');
  }
  return {
    dataDir: flags.dataDir,
    readonly,
    // A tool next to a running server never compacts the server's store.
    sqlite: { compactIntervalMs: 0 },
    ...(flags.etcdServers ? { etcdServers: flags.etcdServers } : {}),
    ...(flags.etcdCafile ? { etcdCaFile: flags.etcdCafile } : {}),
    ...(flags.etcdCertfile ? { etcdCertFile: flags.etcdCertfile } : {}),
    ...(flags.etcdKeyfile ? { etcdKeyFile: flags.etcdKeyfile } : {}),
  };
}

/**
 * Opens the store; any failure is a StoreError UNAVAILABLE naming the store (a check that cannot
 * complete: exit 3). That includes the embedded store's READ_ONLY / NO_SPACE / IO_ERROR of a
 * read-write open (rewrite): exit 1 would say "stale values found".
 */
export async function openToolStore(loc: StoreLocation): Promise<Store> {
  try {
    return await openStore(loc);
  } catch (err) {
    if (err instanceof StoreError && err.code === 'UNAVAILABLE') throw err;
    const message = err instanceof StoreError ? err.message : `cannot open the ${describeStoreLocation(loc)}: ${messageOf(err)}`;
    throw new StoreError('UNAVAILABLE', message, { cause: err });
  }
}

/** Loads the configuration and builds the transformers and KMS providers; opens no store. Config problems throw ToolUsageError. */
export async function openKmsEngine(flags: EngineConfigFlags, options: Omit<OpenEngineOptions, 'readonly'>): Promise<KmsEngine> {
  let config: EncryptionConfiguration;
  try {
    config = (await loadEncryptionConfigFile(flags.encryptionProviderConfig)).config;
  } catch (err) {
    throw new ToolUsageError(messageOf(err), { cause: err });
  }
  const table = buildResourceTable(config);
  const wanted = flags.resources ? parseResourceSelection(flags.resources) : undefined;
  const configures = (gr: GroupResource) => table.providersFor(gr) !== undefined;
  const selects = wanted ? (gr: GroupResource) => isSelected(wanted, gr) : configures;

  const kmsSets: KmsProviders[] = [];
  const health = new Map<KMSConfiguration, { check: HealthCheck; providers: KmsProviders }>();
  let factory: KmsTransformerFactory | undefined;
  if (usesKms(config)) {
    // The gRPC KMS clients are loaded only for a configuration with kms providers.
    const { createKmsProviders } = await import('../kms/factory.js');
    factory = (kms, index) => {
      const providers = createKmsProviders({
        ...(options.log ? { log: options.log } : {}),
        ...(options.kmsIntervals ? { intervals: options.kmsIntervals } : {}),
      });
      kmsSets.push(providers);
      const transformer = providers.factory(kms, index);
      const check = providers.providerHealthChecks()[0];
      if (check) health.set(kms, { check, providers });
      return transformer;
    };
  }
  const closeKms = async () => {
    for (const k of kmsSets.splice(0)) await k.close();
  };
  let transformers: TransformerSet;
  try {
    transformers = buildTransformers(config, factory ? { kms: factory } : {});
  } catch (err) {
    await closeKms();
    throw new ToolUsageError(messageOf(err), { cause: err });
  }

  return {
    transformers,
    selects,
    configures,
    writeKmsProviders() {
      const out: WriteKmsProvider[] = [];
      const seen = new Set<string>();
      const writers: Array<{ resource: string; first: ProviderConfiguration | undefined }> = wanted
        ? wanted.map((w) => ({ resource: groupResourceString(w), first: table.providersFor(w)?.[0] }))
        : table.rules.map((r) => ({ resource: groupResourceString(r.groupResource), first: r.providers[0] }));
      for (const { resource, first } of writers) {
        if (!first || !('kms' in first)) continue;
        const kms = health.get(first.kms);
        if (!kms) continue;
        const id = `${resource}\0${first.kms.name}`;
        if (seen.has(id)) continue;
        seen.add(id);
        const { name, endpoint } = first.kms;
        out.push({
          resource, name, endpoint, apiVersion: first.kms.apiVersion ?? 'v1', health: kms.check,
          keyIdHash: () => kms.providers.statusKeyIdHash(name),
          refresh: () => kms.providers.refreshStatus(name),
        });
      }
      return out;
    },
    kmsProviders() {
      const out: KmsProviderProbe[] = [];
      const seen = new Set<string>();
      for (const [kms, { check }] of health) {
        const apiVersion = kms.apiVersion === 'v2' ? 'v2' : 'v1';
        if (seen.has(`${apiVersion}:${kms.name}`)) continue;
        seen.add(`${apiVersion}:${kms.name}`);
        out.push({ name: kms.name, apiVersion, endpoint: kms.endpoint, check: () => check.check() });
      }
      return out;
    },
    resourceRules() {
      return table.rules.map((r) => ({ resource: groupResourceString(r.groupResource), providers: r.providers }));
    },
    async ready() {
      await Promise.all(kmsSets.map((k) => k.ready()));
    },
    async close() {
      try {
        await transformers.close();
      } finally {
        await closeKms();
      }
    },
  };
}
