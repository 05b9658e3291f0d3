// `atrest kms-plugin`: the KMS plugin kube-apiserver talks to over a UNIX socket (v1beta1 and v2),
// with `init-key` / `rotate-key` subcommands for the KEK. Backend flags come from every backend
// module (src/plugin/backends); every flag can also be set by its ATREST_… environment variable.
//
//   atrest kms-plugin --listen unix:///var/run/atrest/kms.sock --backend local --key-file /etc/atrest/kek.json
//   atrest kms-plugin init-key --backend local --key-file /etc/atrest/kek.json
//   atrest kms-plugin rotate-key --key-file /etc/atrest/kek.json
//   atrest kms-plugin list-keys --key-file /etc/atrest/kek.json
//   atrest kms-plugin restore-key --key-file /etc/atrest/kek.json --key-id local:v1:0123456789abcdef
// Retiring a version is `atrest rotate`'s last step (src/cli/rotate.ts), which first proves that no
// stored value needs it.
import { writeSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { AtrestError, messageOf } from '../errors.js';
import type { Logger } from '../log.js';
import type { Registry } from '../metrics.js';
import type { BackendModule, BackendOptions, KekBackend, KeyVersionInfo } from '../plugin/backend.js';
import { hierarchyFlags } from '../plugin/hierarchy/config.js';
import type { HealthServer } from '../plugin/health-server.js';
import type { PluginServer, StatusVersion } from '../plugin/server.js';
import { addBackendFlags, chooseBackend } from './backend-options.js';

interface KmsPluginOptions extends BackendOptions {
  listen?: string;
  backend: string;
  healthListen?: string;
  refreshInterval: string;
  statusVersion: string;
  shutdownGrace: string;
}

function milliseconds(flag: string, min: number) {
  return (value: string): string => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${flag} must be a whole number of milliseconds, at least ${min}`);
    return value;
  };
}

export function registerKmsPlugin(program: Command): void {
  const cmd = program
    .command('kms-plugin')
    .description('serve the KMS plugin gRPC API (v1beta1 and v2) on a UNIX socket for kube-apiserver; init-key / rotate-key manage the KEK')
    .addOption(new Option('--listen <endpoint>', 'UNIX socket to serve on: unix:///path/kms.sock or unix:///@abstract-name').env('ATREST_KMS_PLUGIN_LISTEN'))
    .addOption(new Option('--health-listen <host:port>', 'also serve /healthz, /livez and /metrics over HTTP, e.g. 127.0.0.1:8081').env('ATREST_KMS_PLUGIN_HEALTH_LISTEN'))
    .addOption(new Option('--refresh-interval <ms>', 'how often to look for a rotated KEK').default('5000').argParser(milliseconds('--refresh-interval', 50)).env('ATREST_KMS_PLUGIN_REFRESH_INTERVAL'))
    .addOption(new Option('--status-version <version>', 'version in v2 Status answers (v2beta1: kube-apiserver 1.27+; v2: 1.29+)').choices(['v2beta1', 'v2']).default('v2beta1').env('ATREST_KMS_PLUGIN_STATUS_VERSION'))
    .addOption(new Option('--shutdown-grace <ms>', 'on SIGTERM, how long in-flight calls may take to finish').default('10000').argParser(milliseconds('--shutdown-grace', 0)).env('ATREST_KMS_PLUGIN_SHUTDOWN_GRACE'))
    .addOption(new Option('--authority-repair', 'rewrite an HTTP/2 :authority Node\'s HTTP/2 refuses (the socket path kube-apiserver 1.27/1.28 send) to localhost; --authority-repair=false hands connections to gRPC as accepted (a benchmark baseline)').default(true).env('ATREST_KMS_PLUGIN_AUTHORITY_REPAIR'))
    .configureHelp({ showGlobalOptions: true });
  // The key hierarchy's flags apply to the remote backends (kmip, pkcs11) a serving plugin wraps.
  addBackendFlags(cmd, [], [hierarchyFlags]);
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
  cmd.command('list-keys')
    .description('list the KEK versions: current, active (still unwraps) or retired, with their dates')
    .addOption(new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table'))
    .action(async (opts: { output: 'table' | 'json' }, sub: Command) => listKeys(sub, opts.output));
  cmd.command('restore-key')
    .description('let a retired KEK version unwrap again (local: within its grace period; pkcs11: sets CKA_DECRYPT back; kmip: not possible)')
    .requiredOption('--key-id <key_id>', 'the key_id of the retired version (see list-keys)')
    .action(async (opts: { keyId: string }, sub: Command) => restoreKey(sub, opts.keyId));
}

const time = (ms: number | undefined): string => (ms === undefined ? '-' : new Date(ms).toISOString());

async function listKeys(sub: Command, output: 'table' | 'json'): Promise<void> {
  const opts = sub.optsWithGlobals<KmsPluginOptions>();
  const { createLogger } = await import('../log.js');
  const backend = await chooseBackend(opts.backend);
  if (!backend.listKeys) throw new InvalidArgumentError(`--backend ${backend.name} cannot list its key versions`);
  const versions = await backend.listKeys(opts, { log: createLogger('kms-plugin') });
  if (output === 'json') {
    process.stdout.write(JSON.stringify(versions.map((v) => ({ ...v, createdAt: time(v.createdAt), retiredAt: time(v.retiredAt), purgeAfter: time(v.purgeAfter) })), null, 2) + '\n');
    return;
  }
  const { table } = await import('../tools/status.js');
  const rows = versions.map((v: KeyVersionInfo) => [String(v.version), v.state, v.keyId, time(v.createdAt), time(v.retiredAt), time(v.purgeAfter)]);
  process.stdout.write(table(['VERSION', 'STATE', 'KEY ID', 'CREATED', 'RETIRED', 'PURGE AFTER'], rows).join('\n') + '\n');
}

async function restoreKey(sub: Command, keyId: string): Promise<void> {
  const opts = sub.optsWithGlobals<KmsPluginOptions>();
  const { createLogger } = await import('../log.js');
  const log = createLogger('kms-plugin');
  const backend = await chooseBackend(opts.backend);
  if (!backend.restoreKey) {
    throw new InvalidArgumentError(`--backend ${backend.name}: a retired version cannot be restored (KMIP has no way back from Deactivated)`);
  }
  try {
    const v = await backend.restoreKey(opts, { log }, keyId);
    process.stdout.write(`${v.keyId} ${v.state}\n`);
  } catch (err) {
    log.error({ event: 'restore-key-failed', backend: backend.name, err: messageOf(err) }, 'restore-key failed');
    throw err;
  }
}

async function keyCommand(sub: Command, action: 'init' | 'rotate'): Promise<void> {
  const opts = sub.optsWithGlobals<KmsPluginOptions>();
  const { createLogger } = await import('../log.js');
  const log = createLogger('kms-plugin');
  const backend = await chooseBackend(opts.backend);
  try {
    const keyId = action === 'init' ? await backend.initKey(opts, { log }) : await backend.rotateKey(opts, { log });
    process.stdout.write(`${keyId}\n`);
    if (action === 'rotate') {
      const { keyIdHash } = await import('../plugin/metrics.js');
      process.stderr.write(rotationAdvice(keyIdHash(keyId), Number(opts.refreshInterval)));
    }
  } catch (err) {
    log.error({ event: `${action}-key-failed`, backend: backend.name, err: messageOf(err) }, `${action}-key failed`);
    throw err;
  }
}

/**
 * Opens the backend; a remote one (kmip, pkcs11) behind the key hierarchy, whose first local KEK is
 * wrapped now: when the remote cannot do it the plugin does not start (fail closed, the remote named).
 */
async function openBackend(module: BackendModule, opts: KmsPluginOptions, log: Logger, metrics: Registry): Promise<KekBackend> {
  const remote = module.describeRemote?.(opts);
  const { readHierarchySettings } = await import('../plugin/hierarchy/config.js');
  const settings = remote === undefined ? undefined : readHierarchySettings(opts);
  let backend: KekBackend;
  try {
    backend = await module.open(opts, { log, metrics });
  } catch (err) {
    if (remote === undefined || !(err instanceof AtrestError)) throw err;
    throw new AtrestError(err.code, `${module.name} backend: cannot open the remote KEK (${remote}): ${err.message}`, { cause: err });
  }
  if (remote === undefined || settings === undefined) return backend;
  const { HierarchyKek } = await import('../plugin/hierarchy/kek.js');
  try {
    return await HierarchyKek.open(backend, settings, { log, metrics, endpoint: remote });
  } catch (err) {
    await backend.close().catch(() => undefined);
    throw err;
  }
}

/**
 * What happens after rotate-key, and when (issue #20): the plugins switch at their next refresh, the
 * API servers at their next kms v2 Status poll (kube-apiserver and atrest serve: every minute while
 * healthy, src/kms/v2-status-loop.ts), and how to see that they did. Printed on stderr; stdout is the
 * key_id alone, for scripts.
 */
export function rotationAdvice(hash: string, refreshMs: number): string {
  const refresh = `${refreshMs / 1000} s`;
  return [
    `The new KEK version is current: key_id hash ${hash}.`,
    `- Running plugins switch to it at their next refresh (--refresh-interval, ${refresh} here).`,
    '- API servers write with it after their next kms v2 Status poll: kube-apiserver and atrest serve poll every minute',
    `  (every 10 s while the plugin fails), so within about 1 minute + ${refresh}. A server that cannot reach its plugin`,
    '  keeps writing with its old DEK seed for at most 3 minutes, then fails writes (kube: rewrite 3 minutes + the refresh',
    '  interval after the rotation and every server either writes with the new key or fails).',
    `- Check: \`atrest status --kms-plugin-health <host:port>\` shows KEY ID HASH ${hash.slice(0, 19)}… for the provider;`,
    `  on each API server, apiserver_envelope_encryption_key_id_hash_total{transformation_type="to_storage",key_id_hash="${hash}"} grows.`,
    '- Then re-encrypt: `atrest rewrite` (it reports values written meanwhile with the old key), and `atrest verify`.',
    '',
  ].join('\n');
}

/**
 * Node joins every thread when the process exits, and a `--pkcs11-call-mode thread` backend thread
 * inside a PKCS#11 call that never returns (a frozen HSM) would hold the exit forever: then say why
 * (and, when starting failed, the error as run.ts would) and end the process without that wait.
 */
async function leaveIfHsmCallStuck(log: Logger, err?: unknown): Promise<void> {
  const { stuckPkcs11Threads } = await import('../plugin/pkcs11/thread-host.js');
  if (stuckPkcs11Threads() === 0) return;
  // Lines already logged are written in the background (through libuv's thread pool, which a module
  // call may hold too): give them a moment, never more, and write the last ones synchronously.
  await Promise.race([new Promise<void>((resolve) => log.flush(() => resolve())), delay(500)]);
  const { createLogger } = await import('../log.js');
  createLogger('kms-plugin', undefined, undefined, true)
    .warn({ event: 'exit-hsm-call-abandoned', threads: stuckPkcs11Threads() }, 'a PKCS#11 call has not returned: exiting without waiting for it');
  if (err !== undefined) writeSync(2, `atrest: ${messageOf(err)}\n`);
  process.kill(process.pid, 'SIGKILL');
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
  let backend: KekBackend;
  try {
    backend = await openBackend(module, opts, log, metrics);
  } catch (err) {
    await leaveIfHsmCallStuck(log, err);
    throw err;
  }
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
      // A boolean flag (commander's value is not a string like the backend options').
      authorityRepair: (opts as { authorityRepair?: unknown }).authorityRepair !== false,
    });
    if (opts.healthListen) {
      const degraded = backend.degraded?.bind(backend);
      health = await startHealthServer({ listen: opts.healthListen, socket: server.address, metrics, log, ...(degraded ? { degraded } : {}) });
    }
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
  await leaveIfHsmCallStuck(log);
  log.flush();
  // grpc-js and the backend may keep handles (timers, module sessions) alive: leave now.
  process.exit(0);
}
