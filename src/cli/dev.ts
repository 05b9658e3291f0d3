// `atrest dev` (= `npm start`): the whole system on one machine with one command. Initialises a
// local KEK in the data dir, serves the KMS plugin on a socket there, and runs `atrest serve` on the
// embedded store with kms v2 first for secrets and configmaps. A second start reuses everything.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { resolve, join } from 'node:path';
import { Command, Option } from 'commander';
import { DEFAULT_DATA_DIR } from '../storage/defaults.js';
import type { FeatureGates } from '../api/feature-gates.js';
import { featureGatesOption } from './feature-gates-option.js';

const KEY_FILE = 'kek.json';
const SOCKET_FILE = 'kms.sock';
const CONFIG_FILE = 'encryption-config.yaml';
const PROVIDER_NAME = 'atrest-dev';

function encryptionConfig(socketPath: string): string {
  return `# Written by \`atrest dev\`: kms v2 (the local plugin) encrypts secrets and configmaps; values
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
    .addOption(new Option('--data-dir <dir>', 'where the store, KEK, socket, certificates and kubeconfig live').default(DEFAULT_DATA_DIR).env('ATREST_DATA_DIR'))
    .addOption(new Option('--secure-port <port>', 'HTTPS port of the API server (0 picks a free one)').default('6443').env('ATREST_SECURE_PORT'))
    .addOption(new Option('--bind-address <ip>', 'address the API server listens on').default('127.0.0.1').env('ATREST_BIND_ADDRESS'))
    .addOption(featureGatesOption())
    .action(async (opts: { dataDir: string; securePort: string; bindAddress: string; featureGates?: FeatureGates }) => {
      const { startApiServer } = await import('../api/index.js');
      const { createLogger } = await import('../log.js');
      const { localBackend } = await import('../plugin/backends/local.js');
      const { startPluginServer } = await import('../plugin/server.js');
      const log = createLogger('dev');
      const dataDir = resolve(opts.dataDir);
      await mkdir(dataDir, { recursive: true, mode: 0o700 });
      const keyFile = join(dataDir, KEY_FILE);
      const socketPath = join(dataDir, SOCKET_FILE);
      const configPath = join(dataDir, CONFIG_FILE);
      const backendOptions = { keyFile };
      if (!existsSync(keyFile)) await localBackend.initKey(backendOptions, { log });
      if (!existsSync(configPath)) await writeFile(configPath, encryptionConfig(socketPath), { mode: 0o600 });

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
