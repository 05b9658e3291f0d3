// What the operator tools over stored data (`verify`, `rewrite`) share: the store and configuration
// flags (kube-apiserver's names, ATREST_… env vars), the resource selection, and opening the store,
// the KMS providers and the transformers of one EncryptionConfiguration. Each kms provider gets its
// own KmsProviders, so a tool can ask about the health of exactly the provider it writes with.
import { existsSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { AtrestError } from '../errors.js';
import { loadEncryptionConfigFile } from '../config/load.js';
import { buildResourceTable, parseGroupResource } from '../config/resources.js';
import type { EncryptionConfiguration, GroupResource, KMSConfiguration, ProviderConfiguration } from '../config/types.js';
import type { HealthCheck } from '../health.js';
import { createKmsProviders, type KmsIntervals, type KmsProviders } from '../kms/factory.js';
import { silentLogger, type Logger } from '../log.js';
import { DEFAULT_DATA_DIR, embeddedStoreFile, openStore, splitEtcdServers, type StoreLocation } from '../storage/open.js';
import { DEFAULT_ETCD_PREFIX } from '../storage/keys.js';
import type { Store } from '../storage/types.js';
import { buildTransformers } from '../transform/build.js';
import type { KmsTransformerFactory, TransformerSet } from '../transform/types.js';

export interface EngineFlags {
  encryptionProviderConfig: string;
  etcdServers?: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  dataDir: string;
  etcdPrefix: string;
  resources?: string;
}

/** Adds the flags of EngineFlags to `command`. */
export function addEngineOptions(command: Command): Command {
  return command
    .addOption(new Option('--encryption-provider-config <file>', 'the EncryptionConfiguration in force').makeOptionMandatory().env('ATREST_ENCRYPTION_PROVIDER_CONFIG'))
    .addOption(new Option('--etcd-servers <urls>', 'comma-separated etcd client URLs (else the embedded store)').env('ATREST_ETCD_SERVERS'))
    .addOption(new Option('--etcd-cafile <file>', 'CA bundle of the etcd servers').env('ATREST_ETCD_CAFILE'))
    .addOption(new Option('--etcd-certfile <file>', 'client certificate for etcd').env('ATREST_ETCD_CERTFILE'))
    .addOption(new Option('--etcd-keyfile <file>', 'client key for etcd').env('ATREST_ETCD_KEYFILE'))
    .addOption(new Option('--data-dir <dir>', 'data directory of the embedded store').default(DEFAULT_DATA_DIR).env('ATREST_DATA_DIR'))
    .addOption(new Option('--etcd-prefix <prefix>', 'key prefix of the objects').default(DEFAULT_ETCD_PREFIX).env('ATREST_ETCD_PREFIX'))
    .addOption(new Option('--resources <list>', 'comma-separated resources (e.g. secrets,configmaps); default: those the config names'));
}

/** A usage or configuration problem (the tools exit 2 for these). */
export class ToolUsageError extends AtrestError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TOOL_USAGE', message, options);
  }
}

export interface Engine {
  config: EncryptionConfiguration;
  store: Store;
  transformers: TransformerSet;
  /** Which resources the tool looks at: `--resources`, else those the configuration names. */
  selects(gr: GroupResource): boolean;
  /**
   * The write provider (first provider) of each selected resource that is a kms provider, with its
   * own health check (the kms v2 Status probe, or the v1 Encrypt+Decrypt probe).
   */
  writeKmsProviders(): Array<{ resource: string; name: string; apiVersion: string; health: HealthCheck }>;
  /** Settles when every kms v2 provider has had its first Status answer (or failure). */
  ready(): Promise<void>;
  close(): Promise<void>;
}

export interface OpenEngineOptions {
  /** Embedded store: open read-only (verify) or for writing (rewrite; the store file must exist either way). */
  readonly: boolean;
  log?: Logger;
  kmsIntervals?: Partial<KmsIntervals>;
}

/** Loads the configuration, opens the store and builds the transformers. Config and flag problems throw ToolUsageError. */
export async function openEngine(flags: EngineFlags, options: OpenEngineOptions): Promise<Engine> {
  let config: EncryptionConfiguration;
  try {
    config = (await loadEncryptionConfigFile(flags.encryptionProviderConfig)).config;
  } catch (err) {
    throw new ToolUsageError(err instanceof Error ? err.message : String(err), { cause: err });
  }
  const table = buildResourceTable(config);
  let wanted: GroupResource[] | undefined;
  if (flags.resources) {
    try {
      wanted = flags.resources.split(',').map((r) => r.trim()).filter((r) => r !== '').map((r) => parseGroupResource(r));
    } catch (err) {
      throw new ToolUsageError(`--resources: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (wanted.length === 0) throw new ToolUsageError('--resources: no resource named');
  }
  const selects = wanted
    ? (gr: GroupResource) => wanted.some((w) => w.resource === gr.resource && w.group === gr.group)
    : (gr: GroupResource) => table.providersFor(gr) !== undefined;

  const useEtcd = flags.etcdServers !== undefined && splitEtcdServers(flags.etcdServers).length > 0;
  if (!useEtcd && !existsSync(embeddedStoreFile(flags.dataDir))) {
    throw new ToolUsageError(`no embedded store at ${embeddedStoreFile(flags.dataDir)} (check --data-dir, or give --etcd-servers)`);
  }
  if (Boolean(flags.etcdCertfile) !== Boolean(flags.etcdKeyfile)) {
    throw new ToolUsageError('--etcd-certfile and --etcd-keyfile must be given together');
  }
  const loc: StoreLocation = {
    dataDir: flags.dataDir,
    readonly: options.readonly,
    // A tool next to a running server never compacts the server's store.
    sqlite: { compactIntervalMs: 0 },
    ...(flags.etcdServers ? { etcdServers: flags.etcdServers } : {}),
    ...(flags.etcdCafile ? { etcdCaFile: flags.etcdCafile } : {}),
    ...(flags.etcdCertfile ? { etcdCertFile: flags.etcdCertfile } : {}),
    ...(flags.etcdKeyfile ? { etcdKeyFile: flags.etcdKeyfile } : {}),
  };

  const log = options.log ?? silentLogger();
  const kmsSets: KmsProviders[] = [];
  const health = new Map<KMSConfiguration, HealthCheck>();
  const factory: KmsTransformerFactory = (kms, index) => {
    const providers = createKmsProviders({ log, ...(options.kmsIntervals ? { intervals: options.kmsIntervals } : {}) });
    kmsSets.push(providers);
    const transformer = providers.factory(kms, index);
    const check = providers.healthChecks()[0];
    if (check) health.set(kms, check);
    return transformer;
  };
  const closeKms = async () => {
    for (const k of kmsSets.splice(0)) await k.close();
  };
  let transformers: TransformerSet;
  try {
    transformers = buildTransformers(config, { kms: factory });
  } catch (err) {
    await closeKms();
    throw new ToolUsageError(err instanceof Error ? err.message : String(err), { cause: err });
  }
  let store: Store;
  try {
    store = openStore(loc);
  } catch (err) {
    await closeKms();
    throw err;
  }

  return {
    config,
    store,
    transformers,
    selects,
    writeKmsProviders() {
      const out: Array<{ resource: string; name: string; apiVersion: string; health: HealthCheck }> = [];
      const seen = new Set<string>();
      const writers: Array<{ resource: string; first: ProviderConfiguration | undefined }> = wanted
        ? wanted.map((w) => ({ resource: w.group === '' ? w.resource : `${w.resource}.${w.group}`, first: table.providersFor(w)?.[0] }))
        : table.rules.map((r) => ({ resource: r.groupResource.group === '' ? r.groupResource.resource : `${r.groupResource.resource}.${r.groupResource.group}`, first: r.providers[0] }));
      for (const { resource, first } of writers) {
        if (!first || !('kms' in first)) continue;
        const check = health.get(first.kms);
        if (!check) continue;
        const id = `${resource}\0${first.kms.name}`;
        if (seen.has(id)) continue;
        seen.add(id);
        out.push({ resource, name: first.kms.name, apiVersion: first.kms.apiVersion ?? 'v1', health: check });
      }
      return out;
    },
    async ready() {
      await Promise.all(kmsSets.map((k) => k.ready()));
    },
    async close() {
      await store.close();
      await transformers.close();
      await closeKms();
    },
  };
}
