// startApiServer: builds and runs the API server in-process (`atrest serve`, `atrest dev`, tests).
// Store (etcd or embedded SQLite) → EncryptedStore (transformers of the current encryption
// generation, AAD = full key) → ObjectRepository → REST handlers → node:https listener (TLS only).
// Beside the handlers, on the same repository and store: the StorageVersionMigration controller
// (src/controllers), run by whichever replica holds its Lease.
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { DEFAULT_LEADER_ELECTION, type LeaderElectionTimings } from '../controllers/leader-election.js';
import { StorageVersionMigrationController } from '../controllers/storage-version-migration/controller.js';
import { AtrestError } from '../errors.js';
import { describeListenError } from '../listen-error.js';
import type { KmsIntervals } from '../kms/factory.js';
import { createLogger, type Logger } from '../log.js';
import { newRegistry, type Registry } from '../metrics.js';
import { EncryptedStore, storeHealthCheck, storeWritableCheck } from '../storage/encrypted-store.js';
import { DEFAULT_ETCD_PREFIX, normalizePrefix } from '../storage/keys.js';
import { inDataDir, makeDataDir } from '../storage/disk-errors.js';
import { DEFAULT_DATA_DIR, describeStoreLocation, openStore, type StoreLocation } from '../storage/open.js';
import type { Store } from '../storage/types.js';
import { ensureGeneratedTokenFile, loadTokenFile, TokenAuthenticator } from './auth.js';
import { closeGeneration, EncryptionState, identityGeneration, loadEncryptionGeneration, type EncryptionGeneration } from './encryption.js';
import { EncryptionConfigReloader, type ReloadOutcome } from './encryption-reload.js';
import { defaultFeatureGates, type FeatureGates } from './feature-gates.js';
import { writeKubeconfig } from './kubeconfig.js';
import { NamespaceCache } from './namespace-cache.js';
import { bootstrapNamespaces } from './namespaces.js';
import { migrationObjects } from './migration-objects.js';
import { ObjectRepository } from './object-repository.js';
import { ensureGeneratedPki, loadServingPki } from './pki.js';
import { RequestMetrics } from './request-metrics.js';
import { ResourceHandlers } from './resource-handlers.js';
import { RESOURCE_TYPES } from './resource-types.js';
import { createRequestListener } from './server.js';
import { YamlDecoder, type YamlDecoderOptions } from './yaml/decoder.js';
import { DEFAULT_MAX_BODY_BYTES, yamlBodyLimits } from './body-limits.js';
import { DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT, DEFAULT_MAX_REQUESTS_INFLIGHT } from './inflight-limit.js';
import { transformationRecorder } from './transformation-metrics.js';

export { DEFAULT_MAX_BODY_BYTES } from './body-limits.js';
export { DEFAULT_RELOAD_INTERVAL_MS } from './encryption-reload.js';

export interface ApiServerOptions {
  /** `--data-dir`: embedded store, generated PKI, token and admin.kubeconfig (default ./.atrest). */
  dataDir?: string;
  /** `--etcd-servers`: comma-separated or a list; absent = the embedded SQLite store. */
  etcdServers?: string | string[];
  /** `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile` (PEM files) for etcd over TLS. */
  etcdCaFile?: string;
  etcdCertFile?: string;
  etcdKeyFile?: string;
  /** `--etcd-prefix` (default /registry). */
  etcdPrefix?: string;
  /** A store to use instead of opening one (tests, `atrest dev`); closed by close(). */
  store?: Store;
  /** `--encryption-provider-config`; absent = everything stored with identity. */
  encryptionProviderConfig?: string;
  /** `--encryption-provider-config-automatic-reload`. */
  encryptionProviderConfigAutomaticReload?: boolean;
  /** Reload poll interval (default 60 s, like kube). */
  reloadIntervalMs?: number;
  /** `--bind-address` (default 127.0.0.1). */
  bindAddress?: string;
  /** `--secure-port` (default 6443; 0 = a free port). */
  securePort?: number;
  /** `--tls-cert-file` / `--tls-private-key-file`; absent = a CA and serving cert generated into the data dir. */
  tlsCertFile?: string;
  tlsPrivateKeyFile?: string;
  /** `--token-auth-file` (kube's CSV); absent = an admin token generated into the data dir. */
  tokenAuthFile?: string;
  /** Request body limit (default 3 MiB); larger bodies get 413. */
  maxRequestBodyBytes?: number;
  /** Bounds of the YAML body decoder (tests make them small); depth and expansion follow the body limits. */
  yamlDecoder?: Pick<YamlDecoderOptions, 'timeoutMs' | 'maxHeapMb' | 'maxQueue' | 'maxAliases'>;
  /** `--max-requests-inflight` (default 400 like kube; 0 = no limit): more read-only requests at once get 429. */
  maxRequestsInflight?: number;
  /** `--max-mutating-requests-inflight` (default 200 like kube; 0 = no limit). */
  maxMutatingRequestsInflight?: number;
  /** `--feature-gates`, parsed (parseFeatureGates); absent = every gate at its default. */
  featureGates?: FeatureGates;
  /** JSON text an unpaginated list buffers before it streams (tests; default 16 Mi characters). */
  listBufferChars?: number;
  /** Upper bound of watch timeoutSeconds (default 1800). */
  maxWatchTimeoutSeconds?: number;
  /** BOOKMARK interval of watches that allow them (default 60 s). */
  watchBookmarkIntervalMs?: number;
  /**
   * Leader election of the controllers (kube-controller-manager's --leader-elect-lease-duration,
   * --leader-elect-renew-deadline, --leader-elect-retry-period; default 15 s, 10 s, 2 s); `false`
   * (--leader-elect=false): this server runs them without a lease (only when it is the only one).
   */
  leaderElection?: LeaderElectionTimings | false;
  /** StorageVersionMigrations: values per batch (default 500) and writes per second (0: unlimited). */
  storageVersionMigration?: { batchSize?: number; rate?: number };
  log?: Logger;
  /** Registry for request, KMS and transformation metrics (a new one when absent). */
  metrics?: Registry;
  kmsIntervals?: Partial<KmsIntervals>;
  now?: () => number;
}

export interface RunningApiServer {
  /** `https://<host>:<port>` */
  url: string;
  port: number;
  kubeconfigPath: string;
  /** The bearer token written into the kubeconfig. */
  token: string;
  /** The generated CA certificate (absent with --tls-cert-file). */
  caCertPath?: string;
  /** PEM of what clients should trust. */
  caPem: string;
  registry: Registry;
  /** One reload poll now (with automatic reload on). */
  reloadNow?(): Promise<ReloadOutcome>;
  close(): Promise<void>;
}

export class ApiServerConfigError extends AtrestError {
  constructor(message: string) {
    super('API_SERVER_CONFIG_INVALID', message);
  }
}

function hostForUrl(bind: string): string {
  const h = bind === '0.0.0.0' || bind === '' ? '127.0.0.1' : bind === '::' ? '::1' : bind;
  return h.includes(':') ? `[${h}]` : h;
}

export async function startApiServer(options: ApiServerOptions = {}): Promise<RunningApiServer> {
  const log = options.log ?? createLogger('apiserver');
  if (options.encryptionProviderConfigAutomaticReload && !options.encryptionProviderConfig) {
    throw new ApiServerConfigError('--encryption-provider-config-automatic-reload must be set with --encryption-provider-config');
  }
  if (Boolean(options.tlsCertFile) !== Boolean(options.tlsPrivateKeyFile)) {
    throw new ApiServerConfigError('--tls-cert-file and --tls-private-key-file must be given together');
  }
  const election = options.leaderElection;
  if (election && election.renewDeadlineMs >= election.leaseDurationMs) {
    throw new ApiServerConfigError('--leader-elect-renew-deadline must be less than --leader-elect-lease-duration');
  }
  const dataDir = resolve(options.dataDir ?? DEFAULT_DATA_DIR);
  makeDataDir(dataDir);
  const etcdPrefix = normalizePrefix(options.etcdPrefix ?? DEFAULT_ETCD_PREFIX);
  const registry = options.metrics ?? newRegistry();
  const reload = options.encryptionProviderConfigAutomaticReload ?? false;
  const apiServerId = `atrest-${randomUUID()}`;
  const loadOptions = { reload, metrics: registry, log, apiServerId, ...(options.kmsIntervals ? { kmsIntervals: options.kmsIntervals } : {}) };

  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) await c().catch((err: unknown) => log.warn({ err: String(err) }, 'shutdown step failed'));
  };

  try {
    let initial: EncryptionGeneration;
    if (options.encryptionProviderConfig) {
      initial = await loadEncryptionGeneration(options.encryptionProviderConfig, loadOptions);
      log.info({ path: options.encryptionProviderConfig, contentHash: initial.contentHash, automaticReload: reload }, 'loaded the encryption provider configuration');
    } else {
      initial = identityGeneration();
      log.warn('no --encryption-provider-config: every object is stored unencrypted (identity)');
    }
    const state = new EncryptionState(initial, etcdPrefix, transformationRecorder(registry));
    cleanups.push(() => closeGeneration(state.current));

    const location: StoreLocation = {
      dataDir,
      ...(options.etcdServers !== undefined ? { etcdServers: options.etcdServers } : {}),
      ...(options.etcdCaFile ? { etcdCaFile: options.etcdCaFile } : {}),
      ...(options.etcdCertFile ? { etcdCertFile: options.etcdCertFile } : {}),
      ...(options.etcdKeyFile ? { etcdKeyFile: options.etcdKeyFile } : {}),
    };
    const store = options.store ?? (await inDataDir(dataDir, 'open the embedded store', () => openStore(location)));
    cleanups.push(() => store.close());
    log.info({ store: options.store ? 'injected' : describeStoreLocation(location), etcdPrefix }, 'storage opened');
    const encrypted = new EncryptedStore(store, state.transformerFor);
    const repo = new ObjectRepository(encrypted, etcdPrefix);
    const now = options.now ?? Date.now;

    // kms v2 providers must finish their first Status before anything can be encrypted with them.
    await initial.kms?.ready();
    try {
      const created = await bootstrapNamespaces(repo, now());
      if (created.length) log.info({ namespaces: created }, 'created the bootstrap namespaces');
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : String(err) }, 'could not create the bootstrap namespaces');
    }

    const pki = options.tlsCertFile
      ? await loadServingPki(options.tlsCertFile, options.tlsPrivateKeyFile as string)
      : await inDataDir(dataDir, 'write the generated CA and serving certificate', () => ensureGeneratedPki(dataDir, [options.bindAddress ?? '127.0.0.1']));
    const tokens = options.tokenAuthFile
      ? await loadTokenFile(options.tokenAuthFile)
      : await inDataDir(dataDir, 'write the generated token file', () => ensureGeneratedTokenFile(join(dataDir, 'tokens.csv')));
    const authenticator = new TokenAuthenticator(tokens);

    // Creates check their namespace in a watch-fed cache and guard the create by its revision (both backends).
    let namespaceCache: NamespaceCache | undefined;
    if (repo.canGuardCreates) {
      const cache = new NamespaceCache(repo, log);
      namespaceCache = cache;
      cleanups.push(async () => cache.close());
      await cache.start();
    }

    const openWatches = new Set<() => void>();
    const featureGates = options.featureGates ?? defaultFeatureGates();
    if (featureGates.AllowUnsafeMalformedObjectDeletion) log.warn('feature gate AllowUnsafeMalformedObjectDeletion is on: DELETE with ignoreStoreReadErrorWithClusterBreakingPotential removes corrupt objects unread');
    const maxBodyBytes = options.maxRequestBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    const yamlDecoder = new YamlDecoder({ ...yamlBodyLimits(maxBodyBytes), log, ...options.yamlDecoder });
    cleanups.push(() => yamlDecoder.close());
    const handlers = new ResourceHandlers({
      repo, log, now, featureGates, maxBodyBytes, yamlDecoder,
      ...(options.listBufferChars ? { listBufferChars: options.listBufferChars } : {}),
      ...(namespaceCache ? { namespaceCache } : {}),
    });
    const listener = createRequestListener({
      handlers,
      watch: {
        repo, log, now,
        ...(options.maxWatchTimeoutSeconds ? { maxTimeoutSeconds: options.maxWatchTimeoutSeconds } : {}),
        ...(options.watchBookmarkIntervalMs ? { bookmarkIntervalMs: options.watchBookmarkIntervalMs } : {}),
        register: (close) => {
          openWatches.add(close);
          return () => openWatches.delete(close);
        },
      },
      authenticator,
      metrics: new RequestMetrics(registry),
      registry,
      log,
      etcdPrefix,
      storeCheck: storeHealthCheck(store),
      storeWritableCheck: storeWritableCheck(store),
      kmsChecks: () => state.healthChecks(),
      maxBodyBytes,
      inflight: {
        maxRequestsInflight: options.maxRequestsInflight ?? DEFAULT_MAX_REQUESTS_INFLIGHT,
        maxMutatingRequestsInflight: options.maxMutatingRequestsInflight ?? DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT,
      },
    });

    const server: Server = createServer({ cert: pki.certPem, key: pki.keyPem, minVersion: 'TLSv1.2' }, listener);
    // Idle keep-alive connections live 90 s, as kube-apiserver's (secure_serving.go IdleTimeout, which
    // matches Go's http.DefaultTransport). Node's default of 5 s closes connections that clients
    // (kubectl, client-go, informers between resyncs) still count on, and a request sent on one just
    // as it closes fails with a connection reset.
    server.keepAliveTimeout = 90_000;
    const bind = options.bindAddress ?? '127.0.0.1';
    const securePort = options.securePort ?? 6443;
    await new Promise<void>((resolveListen, reject) => {
      const where = `${bind.includes(':') ? `[${bind}]` : bind}:${securePort}`;
      const onError = (err: Error): void => reject(new ApiServerConfigError(describeListenError(err, where, { port: '--secure-port', address: '--bind-address' })));
      server.once('error', onError);
      server.listen(securePort, bind, () => {
        server.off('error', onError);
        resolveListen();
      });
    });
    cleanups.push(async () => {
      for (const close of [...openWatches]) close();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    });
    const port = (server.address() as AddressInfo).port;
    const url = `https://${hostForUrl(bind)}:${port}`;

    const token = (tokens[0] as { token: string }).token;
    const kubeconfigPath = join(dataDir, 'admin.kubeconfig');
    await inDataDir(dataDir, 'write admin.kubeconfig', () => writeKubeconfig(kubeconfigPath, { server: url, caPem: pki.caPem, token, user: tokens[0]?.name ?? 'admin' }));

    let reloader: EncryptionConfigReloader | undefined;
    if (reload && options.encryptionProviderConfig) {
      reloader = new EncryptionConfigReloader({
        path: options.encryptionProviderConfig,
        state,
        load: (path) => loadEncryptionGeneration(path, loadOptions),
        log,
        registry,
        ...(options.reloadIntervalMs ? { intervalMs: options.reloadIntervalMs } : {}),
      });
      reloader.start();
      const r = reloader;
      cleanups.push(() => r.stop());
    }
    // Controllers last: they act on what the handlers serve, through the same repository and store.
    const migrations = new StorageVersionMigrationController({
      objects: migrationObjects(repo),
      store,
      encryptedStore: encrypted,
      transformers: state.transformers,
      etcdPrefix,
      serves: (gr) => Object.values(RESOURCE_TYPES).some((rt) => rt.group === gr.group && rt.resource === gr.resource),
      log,
      registry,
      leaderElection: options.leaderElection ?? DEFAULT_LEADER_ELECTION,
      ...(options.storageVersionMigration?.batchSize ? { batchSize: options.storageVersionMigration.batchSize } : {}),
      ...(options.storageVersionMigration?.rate ? { rate: options.storageVersionMigration.rate } : {}),
      now,
    });
    migrations.start();
    cleanups.push(() => migrations.stop());
    log.info({ url, kubeconfig: kubeconfigPath }, 'serving');

    let closing: Promise<void> | undefined;
    return {
      url,
      port,
      kubeconfigPath,
      token,
      ...(pki.caCertPath ? { caCertPath: pki.caCertPath } : {}),
      caPem: pki.caPem,
      registry,
      ...(reloader ? { reloadNow: () => (reloader as EncryptionConfigReloader).checkNow() } : {}),
      close: () => (closing ??= cleanup()),
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
