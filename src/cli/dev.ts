// `atrest dev` (= `npm start`): the whole system on one machine with one command. Initialises a
// local KEK in the data dir, serves the KMS plugin on a socket there (or, when that path is too long
// for a UNIX socket, in a private directory: src/cli/dev-socket.ts; --kms-socket to choose), and
// runs `atrest serve` on the embedded store with kms v2 first for secrets and configmaps. A second
// start reuses everything.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { resolve, join } from 'node:path';
import { Command, Option } from 'commander';
import { DEFAULT_DATA_DIR } from '../storage/defaults.js';
import type { FeatureGates } from '../api/feature-gates.js';
import { featureGatesOption } from './feature-gates-option.js';
import { chooseDevSocket } from './dev-socket.js';

const KEY_FILE = 'kek.json';
const CONFIG_FILE = 'encryption-config.yaml';
const PROVIDER_NAME = 'atrest-dev';

const CONFIG_HEADER = '# Written by `atrest dev`:';

function encryptionConfig(socketPath: string): string {
  return `${CONFIG_HEADER} kms v2 (the local plugin) encrypts secrets and configmaps; values
# written before encryption was on (identity) stay readable until rewritten.
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
      - configmaps
    providers:
      - kms:
          apiVersion: v2
          name: ${PROVIDER_NAME}
          endpoint: unix://${socketPath}
          timeout: 3s
      - identity: {}
`;
}

export function registerDev(program: Command): void {
  program
    .command('dev')
    .description('run the KMS plugin and the API server on the embedded store, encrypted with kms v2 (npm start)')
    .addOption(new Option('--data-dir <dir>', 'where the store, KEK, socket, certificates and kubeconfig live').default(DEFAULT_DATA_DIR))
    .addOption(new Option('--secure-port <port>', 'HTTPS port of the API server (0 picks a free one)').default('6443'))
    .addOption(new Option('--bind-address <ip>', 'address the API server listens on').default('127.0.0.1'))
    .addOption(new Option('--kms-socket <path>', 'UNIX socket of the KMS plugin').default(undefined, '<data-dir>/kms.sock, or a private 0700 directory under $XDG_RUNTIME_DIR or the temp dir when that path is longer than a socket path may be (107 bytes)'))
    .addOption(featureGatesOption())
    .action(async (opts: { dataDir: string; securePort: string; bindAddress: string; kmsSocket?: string; featureGates?: FeatureGates }) => {
      const { startApiServer } = await import('../api/index.js');
      const { createLogger } = await import('../log.js');
      const { localBackend } = await import('../plugin/backends/local.js');
      const { startPluginServer } = await import('../plugin/server.js');
      const log = createLogger('dev');
      const dataDir = resolve(opts.dataDir);
      await mkdir(dataDir, { recursive: true, mode: 0o700 });
      const keyFile = join(dataDir, KEY_FILE);
      const socket = chooseDevSocket(dataDir, opts.kmsSocket !== undefined ? { kmsSocket: opts.kmsSocket } : {});
      const socketPath = socket.path;
      if (socket.fallbackReason) log.warn({ event: 'kms-socket-fallback', socket: socketPath }, `${socket.fallbackReason}: serving the KMS plugin on ${socketPath} instead (--kms-socket to choose)`);
      const configPath = join(dataDir, CONFIG_FILE);
      const backendOptions = { keyFile };
      if (!existsSync(keyFile)) await localBackend.initKey(backendOptions, { log });
      await writeDevConfig(configPath, socketPath, log);

      const backend = await localBackend.open(backendOptions, { log });
      const plugin = await startPluginServer({ listen: `unix://${socketPath}`, backend, log: createLogger('kms-plugin') });
      let api;
      try {
        api = await startApiServer({
          dataDir,
          encryptionProviderConfig: configPath,
          bindAddress: opts.bindAddress,
          securePort: Number(opts.securePort),
          log: createLogger('apiserver'),
          ...(opts.featureGates ? { featureGates: opts.featureGates } : {}),
        });
      } catch (err) {
        await plugin.close();
        await backend.close();
        throw err;
      }
      const kc = api.kubeconfigPath;
      process.stdout.write(
        [
          `atrest is serving ${api.url} (embedded store in ${dataDir}; secrets and configmaps encrypted with kms v2)`,
          `kubeconfig: ${kc}`,
          ...(socket.fallbackReason ? [`kms plugin socket: ${socketPath} (${socket.fallbackReason}; --kms-socket to choose)`] : []),
          '',
          'Try:',
          `  kubectl --kubeconfig ${kc} create secret generic s --from-literal=k=v`,
          `  npx atrest get-raw /registry/secrets/default/s --data-dir ${dataDir} | hexdump -C | head`,
          `  kubectl --kubeconfig ${kc} get secret s -o jsonpath='{.data.k}' | base64 -d`,
          '',
          'Ctrl-C stops both.',
          '',
        ].join('\n'),
      );
      await new Promise<void>((done) => {
        const stop = (signal: string): void => {
          log.info({ event: 'stop', signal }, 'stopping the API server and the KMS plugin');
          void api
            .close()
            .then(() => plugin.close())
            .then(() => backend.close())
            .then(done, done);
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
    });
}

/**
 * The dev EncryptionConfiguration: written on the first start; on later starts its kms endpoint is
 * moved to the socket this start serves on (a different --kms-socket, or the fallback), as long as
 * the file is still the one dev wrote (its header line).
 */
async function writeDevConfig(configPath: string, socketPath: string, log: { info(obj: object, msg: string): void }): Promise<void> {
  if (!existsSync(configPath)) {
    await writeFile(configPath, encryptionConfig(socketPath), { mode: 0o600 });
    return;
  }
  const text = await readFile(configPath, 'utf8');
  const endpoint = `endpoint: unix://${socketPath}`;
  if (!text.startsWith(CONFIG_HEADER) || text.includes(`${endpoint}\n`)) return;
  const updated = text.replace(/endpoint: unix:\/\/\S+/, endpoint);
  if (updated === text) return;
  await writeFile(configPath, updated, { mode: 0o600 });
  log.info({ event: 'config-endpoint-updated', config: configPath, socket: socketPath }, 'the dev EncryptionConfiguration now names this start\'s KMS socket');
}
