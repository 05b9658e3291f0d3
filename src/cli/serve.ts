// `atrest serve`: the Kubernetes-compatible API server for core/v1 Namespaces, Secrets and
// ConfigMaps, encrypted at rest, and storagemigration.k8s.io/v1beta1 StorageVersionMigrations, which
// its controller (on the replica holding the Lease) runs. Flags are named like kube-apiserver's; every flag also reads an
// ATREST_* environment variable. Thin: parses flags and runs startApiServer (src/api).
import { Command, InvalidArgumentError, Option } from 'commander';
import { featureGatesOption } from './feature-gates-option.js';
import { goDurationArg } from './flags.js';
import type { FeatureGates } from '../api/feature-gates.js';
import { DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT, DEFAULT_MAX_REQUESTS_INFLIGHT, DEFAULT_RELOAD_INTERVAL_MS } from '../api/defaults.js';
import { formatGoDuration, millisToNanos } from '../config/go-duration.js';
import { DEFAULT_LEADER_ELECTION, DEFAULT_MIGRATION_BATCH_SIZE } from '../controllers/defaults.js';
import { DEFAULT_DATA_DIR } from '../storage/defaults.js';
import { DEFAULT_ETCD_PREFIX } from '../storage/keys.js';

interface ServeOptions {
  encryptionProviderConfig?: string;
  experimentalEncryptionProviderConfig?: string;
  encryptionProviderConfigAutomaticReload?: boolean;
  encryptionProviderConfigReloadInterval: number;
  etcdServers?: string;
  etcdPrefix: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  dataDir: string;
  bindAddress: string;
  securePort: number;
  tlsCertFile?: string;
  tlsPrivateKeyFile?: string;
  tokenAuthFile?: string;
  maxRequestBodyBytes?: number;
  maxRequestsInflight: number;
  maxMutatingRequestsInflight: number;
  featureGates?: FeatureGates;
  leaderElect: boolean;
  leaderElectLeaseDuration: number;
  leaderElectRenewDeadline: number;
  leaderElectRetryPeriod: number;
  storageVersionMigrationBatchSize: number;
  storageVersionMigrationRate: number;
}

const goDurationText = (ms: number): string => formatGoDuration(millisToNanos(ms));

/** A Go duration (`15s`, `1m30s`) in milliseconds, at least `minMs`. */
function duration(minMs: number): (v: string) => number {
  return goDurationArg((ms) => (ms < minMs ? `must be at least ${goDurationText(minMs)}` : undefined));
}

function integer(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    return n;
  };
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the API server (core/v1 Namespaces, Secrets, ConfigMaps; StorageVersionMigrations, which it runs) for kubectl, encrypted at rest')
    .addOption(new Option('--encryption-provider-config <file>', 'EncryptionConfiguration file; without it everything is stored unencrypted (identity)'))
    .addOption(new Option('--experimental-encryption-provider-config <file>', 'old name of --encryption-provider-config').hideHelp())
    .addOption(new Option('--encryption-provider-config-automatic-reload', 'reload the encryption config file when its content changes'))
    .addOption(
      new Option('--encryption-provider-config-reload-interval <ms>', 'how often the file is checked with automatic reload')
        .default(DEFAULT_RELOAD_INTERVAL_MS).argParser(integer(10, 86_400_000)),
    )
    .addOption(new Option('--etcd-servers <urls>', 'comma-separated etcd v3 client URLs (else the embedded store in --data-dir)'))
    .addOption(new Option('--etcd-prefix <prefix>', 'key prefix of every object').default(DEFAULT_ETCD_PREFIX))
    .addOption(new Option('--etcd-cafile <file>', 'CA bundle of the etcd servers'))
    .addOption(new Option('--etcd-certfile <file>', 'client certificate for etcd'))
    .addOption(new Option('--etcd-keyfile <file>', 'client key for etcd'))
    .addOption(new Option('--data-dir <dir>', 'embedded store, generated certificates, token and admin.kubeconfig').default(DEFAULT_DATA_DIR))
    .addOption(new Option('--bind-address <ip>', 'address to listen on').default('127.0.0.1'))
    .addOption(new Option('--secure-port <port>', 'HTTPS port (0: pick a free one)').default(6443).argParser(integer(0, 65535)))
    .addOption(new Option('--tls-cert-file <file>', 'serving certificate (PEM); else one is generated into --data-dir'))
    .addOption(new Option('--tls-private-key-file <file>', 'key of --tls-cert-file (PEM)'))
    .addOption(new Option('--token-auth-file <file>', 'static tokens, kube CSV format token,user,uid[,"groups"]; else an admin token is generated'))
    .addOption(new Option('--max-request-body-bytes <n>', 'larger request bodies get 413').default(undefined, '3145728 (3 MiB, as kube-apiserver)').argParser(integer(1024, 1 << 30)))
    .addOption(new Option('--max-requests-inflight <n>', 'read-only requests served at once; more get 429 (0: no limit)').default(DEFAULT_MAX_REQUESTS_INFLIGHT).argParser(integer(0, 1_000_000)))
    .addOption(new Option('--max-mutating-requests-inflight <n>', 'mutating requests served at once; more get 429 (0: no limit)').default(DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT).argParser(integer(0, 1_000_000)))
    .addOption(featureGatesOption())
    .addOption(new Option('--leader-elect', 'run the controllers (StorageVersionMigration) only on the replica holding their Lease; --leader-elect=false: run them here without one (a single server only)').default(true))
    .addOption(new Option('--leader-elect-lease-duration <duration>', 'how long a holder\'s Lease must stay unrenewed before another replica takes it over').argParser(duration(1000)).default(DEFAULT_LEADER_ELECTION.leaseDurationMs, goDurationText(DEFAULT_LEADER_ELECTION.leaseDurationMs)))
    .addOption(new Option('--leader-elect-renew-deadline <duration>', 'the leader stops when it could not renew its Lease for this long (less than the lease duration)').argParser(duration(100)).default(DEFAULT_LEADER_ELECTION.renewDeadlineMs, goDurationText(DEFAULT_LEADER_ELECTION.renewDeadlineMs)))
    .addOption(new Option('--leader-elect-retry-period <duration>', 'how often to try to acquire or renew the Lease').argParser(duration(10)).default(DEFAULT_LEADER_ELECTION.retryPeriodMs, goDurationText(DEFAULT_LEADER_ELECTION.retryPeriodMs)))
    .addOption(new Option('--storage-version-migration-batch-size <n>', 'objects a StorageVersionMigration lists and writes per batch (its progress is recorded after each)').argParser(integer(1, 100_000)).default(DEFAULT_MIGRATION_BATCH_SIZE))
    .addOption(new Option('--storage-version-migration-rate <n>', 'writes per second of a StorageVersionMigration (0: unlimited)').argParser(integer(0, 1_000_000)).default(0))
    .action(async (opts: ServeOptions) => {
      const { startApiServer } = await import('../api/index.js');
      const { createLogger } = await import('../log.js');
      const log = createLogger('apiserver');
      const config = opts.encryptionProviderConfig ?? opts.experimentalEncryptionProviderConfig;
      const server = await startApiServer({
        log,
        dataDir: opts.dataDir,
        etcdPrefix: opts.etcdPrefix,
        bindAddress: opts.bindAddress,
        securePort: opts.securePort,
        reloadIntervalMs: opts.encryptionProviderConfigReloadInterval,
        ...(config ? { encryptionProviderConfig: config } : {}),
        ...(opts.encryptionProviderConfigAutomaticReload ? { encryptionProviderConfigAutomaticReload: true } : {}),
        ...(opts.etcdServers ? { etcdServers: opts.etcdServers } : {}),
        ...(opts.etcdCafile ? { etcdCaFile: opts.etcdCafile } : {}),
        ...(opts.etcdCertfile ? { etcdCertFile: opts.etcdCertfile } : {}),
        ...(opts.etcdKeyfile ? { etcdKeyFile: opts.etcdKeyfile } : {}),
        ...(opts.tlsCertFile ? { tlsCertFile: opts.tlsCertFile } : {}),
        ...(opts.tlsPrivateKeyFile ? { tlsPrivateKeyFile: opts.tlsPrivateKeyFile } : {}),
        ...(opts.tokenAuthFile ? { tokenAuthFile: opts.tokenAuthFile } : {}),
        ...(opts.maxRequestBodyBytes ? { maxRequestBodyBytes: opts.maxRequestBodyBytes } : {}),
        maxRequestsInflight: opts.maxRequestsInflight,
        maxMutatingRequestsInflight: opts.maxMutatingRequestsInflight,
        ...(opts.featureGates ? { featureGates: opts.featureGates } : {}),
        leaderElection: opts.leaderElect
          ? { leaseDurationMs: opts.leaderElectLeaseDuration, renewDeadlineMs: opts.leaderElectRenewDeadline, retryPeriodMs: opts.leaderElectRetryPeriod }
          : false,
        storageVersionMigration: { batchSize: opts.storageVersionMigrationBatchSize, rate: opts.storageVersionMigrationRate },
      });
      // One machine-readable line on stdout (the port matters with --secure-port 0).
      process.stdout.write(`${JSON.stringify({ url: server.url, port: server.port, kubeconfig: server.kubeconfigPath })}\n`);
      await new Promise<void>((resolve) => {
        const stop = (signal: string): void => {
          log.info({ signal }, 'shutting down');
          void server.close().then(resolve);
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
    });
}
