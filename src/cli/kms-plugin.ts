// `atrest kms-plugin`: the KMS plugin kube-apiserver talks to over a UNIX socket (v1beta1 and v2),
// with `init-key` / `rotate-key` subcommands for the KEK. Backend flags come from every backend
// module (src/plugin/backends); every flag can also be set by its ATREST_… environment variable.
//
//   atrest kms-plugin --listen unix:///var/run/atrest/kms.sock --backend local --key-file /etc/atrest/kek.json
//   atrest kms-plugin init-key --backend local --key-file /etc/atrest/kek.json
//   atrest kms-plugin rotate-key --key-file /etc/atrest/kek.json
import { Command, InvalidArgumentError, Option } from 'commander';
import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';
import type { BackendModule, BackendOptions, KekBackend } from '../plugin/backend.js';
import { backendByName, backends } from '../plugin/backends/index.js';
import type { HealthServer } from '../plugin/health-server.js';
import type { PluginServer, StatusVersion } from '../plugin/server.js';

interface KmsPluginOptions extends BackendOptions {
  listen?: string;
  backend: string;
  healthListen?: string;
  refreshInterval: string;
  statusVersion: string;
  shutdownGrace: string;
  authorityRepair: string;
}

function milliseconds(flag: string, min: number) {
  return (value: string): string => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${flag} must be a whole number of milliseconds, at least ${min}`);
    return value;
  };
}

function addBackendFlags(cmd: Command): void {
  const seen = new Set<string>();
  for (const backend of backends) {
    for (const flag of backend.flags) {
      const option = new Option(flag.flags, flag.description).env(flag.env);
      if (flag.defaultValue !== undefined) option.default(flag.defaultValue);
      if (seen.has(option.attributeName())) continue; // two backends sharing a flag name share the option
      seen.add(option.attributeName());
      cmd.addOption(option);
    }
  }
}

async function chooseBackend(name: string): Promise<BackendModule> {
  const backend = backendByName(name);
  if (!backend) throw new InvalidArgumentError(`--backend ${JSON.stringify(name)} is not one of ${backends.map((b) => b.name).join(', ')}`);
  return backend.load();
}

export function registerKmsPlugin(program: Command): void {
  const cmd = program
    .command('kms-plugin')
    .description('serve the KMS plugin gRPC API (v1beta1 and v2) on a UNIX socket for kube-apiserver; init-key / rotate-key manage the KEK')
    .addOption(new Option('--listen <endpoint>', 'UNIX socket to serve on: unix:///path/kms.sock or unix:///@abstract-name').env('ATREST_KMS_PLUGIN_LISTEN'))
    .addOption(new Option('--backend <name>', 'where the key-encryption key lives').choices(backends.map((b) => b.name)).default('local').env('ATREST_KMS_PLUGIN_BACKEND'))
    .addOption(new Option('--health-listen <host:port>', 'also serve /healthz, /livez and /metrics over HTTP, e.g. 127.0.0.1:8081').env('ATREST_KMS_PLUGIN_HEALTH_LISTEN'))
    .addOption(new Option('--refresh-interval <ms>', 'how often to look for a rotated KEK').default('5000').argParser(milliseconds('--refresh-interval', 50)).env('ATREST_KMS_PLUGIN_REFRESH_INTERVAL'))
    .addOption(new Option('--status-version <version>', 'version in v2 Status answers (v2beta1: kube-apiserver 1.27+; v2: 1.29+)').choices(['v2beta1', 'v2']).default('v2beta1').env('ATREST_KMS_PLUGIN_STATUS_VERSION'))
    .addOption(new Option('--shutdown-grace <ms>', 'on SIGTERM, how long in-flight calls may take to finish').default('10000').argParser(milliseconds('--shutdown-grace', 0)).env('ATREST_KMS_PLUGIN_SHUTDOWN_GRACE'))
    .addOption(new Option('--authority-repair <on|off>', 'rewrite an HTTP/2 :authority Node\'s HTTP/2 refuses (the socket path kube-apiserver 1.27/1.28 send) to localhost; off hands connections to gRPC as accepted (a benchmark baseline)').choices(['on', 'off']).default('on').env('ATREST_KMS_PLUGIN_AUTHORITY_REPAIR'))
    .configureHelp({ showGlobalOptions: true });
  addBackendFlags(cmd);
  cmd.action(async (opts: KmsPluginOptions) => {
    const { createLogger } = await import('../log.js');
    const log = createLogger('kms-plugin');
    try {
      await serve(opts, log);
    } catch (err) {
      log.error({ event: 'start-failed', err: messageOf(err) }, 'kms plugin failed');
      throw err;
    }
  });

  cmd.command('init-key')
    .description('create the first KEK version (refuses when one exists); prints its key_id')
    .action(async (_opts: unknown, sub: Command) => keyCommand(sub, 'init'));
  cmd.command('rotate-key')
    .description('add a KEK version that becomes current (running plugins switch within --refresh-interval); prints its key_id')
    .action(async (_opts: unknown, sub: Command) => keyCommand(sub, 'rotate'));
}

async function keyCommand(sub: Command, action: 'init' | 'rotate'): Promise<void> {
  const opts = sub.optsWithGlobals<KmsPluginOptions>();
  const { createLogger } = await import('../log.js');
  const log = createLogger('kms-plugin');
  const backend = await chooseBackend(opts.backend);
  try {
    const keyId = action === 'init' ? await backend.initKey(opts, { log }) : await backend.rotateKey(opts, { log });
    process.stdout.write(`${keyId}\n`);
  } catch (err) {
    log.error({ event: `${action}-key-failed`, backend: backend.name, err: messageOf(err) }, `${action}-key failed`);
    throw err;
  }
}

/** Resolves with the first SIGTERM/SIGINT; handlers are installed at once (before anything is announced). */
function firstStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.removeListener('SIGTERM', stop);
      process.removeListener('SIGINT', stop);
      // A second signal while stopping finds no listener and ends the process at once.
      resolve(signal);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

async function serve(opts: KmsPluginOptions, log: Logger): Promise<void> {
  if (!opts.listen) throw new InvalidArgumentError('--listen is required (e.g. unix:///var/run/atrest/kms.sock)');
  const module = await chooseBackend(opts.backend);
  const { newRegistry } = await import('../metrics.js');
  const { startHealthServer } = await import('../plugin/health-server.js');
  const { keyIdHash } = await import('../plugin/metrics.js');
  const { startPluginServer } = await import('../plugin/server.js');
  const stopSignal = firstStopSignal();
  const metrics = newRegistry();
  const backend: KekBackend = await module.open(opts, { log, metrics });
  let server: PluginServer | undefined;
  let health: HealthServer | undefined;
  try {
    server = await startPluginServer({
      listen: opts.listen,
      backend,
      log,
      metrics,
      refreshIntervalMs: Number(opts.refreshInterval),
      statusVersion: opts.statusVersion as StatusVersion,
      shutdownGraceMs: Number(opts.shutdownGrace),
      authorityRepair: opts.authorityRepair !== 'off',
    });
    if (opts.healthListen) health = await startHealthServer({ listen: opts.healthListen, socket: server.address, metrics, log });
  } catch (err) {
    await server?.close();
    await backend.close().catch(() => undefined);
    throw err;
  }
  const keyId = await backend.currentKeyId();
  log.info({
    event: 'start', pid: process.pid, listen: server.endpoint, backend: module.name, keyIdHash: keyIdHash(keyId),
    ...(health ? { healthListen: health.address } : {}),
  }, 'kms plugin serving');

  const signal = await stopSignal;
  log.info({ event: 'stopping', signal }, 'stopping: no new connections, finishing in-flight calls');
  await health?.close();
  await server.close();
  await backend.close().catch((err: unknown) => log.error({ event: 'backend-close-failed', err: messageOf(err) }, 'closing the backend failed'));
  log.info({ event: 'stop', signal }, 'kms plugin stopped');
  log.flush();
  // grpc-js and the backend may keep handles (timers, module sessions) alive: leave now.
  process.exit(0);
}
