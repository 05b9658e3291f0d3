// The setting of the `atrest rotate` tests: a real etcd, the KMS plugin (local backend) in this
// process refreshing every 100 ms, `atrest serve` in this process on that etcd with kms v2 for
// secrets (KMS probe timings shortened so it hears a new key_id within a second instead of 20 s),
// and `atrest rotate` run as a child process of the built CLI the way an operator runs it.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startApiServer, type ApiServerOptions, type RunningApiServer } from '../../src/api/index.js';
import { parseEncryptionConfig } from '../../src/config/load.js';
import { createKmsProviders } from '../../src/kms/factory.js';
import type { BackendModule, BackendOptions, KekBackend } from '../../src/plugin/backend.js';
import { localBackend } from '../../src/plugin/backends/local.js';
import { startPluginServer, type PluginServer } from '../../src/plugin/server.js';
import { EncryptedStore } from '../../src/storage/encrypted-store.js';
import { openStore } from '../../src/storage/open.js';
import { parseStorageKey } from '../../src/storage/keys.js';
import type { Store } from '../../src/storage/types.js';
import { buildTransformers } from '../../src/transform/build.js';
import type { TransformerSet } from '../../src/transform/types.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { cliPath, repoRoot, runCli, type CliResult } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/plugin.js';
import { writeKmsV2Config } from '../helpers/server.js';
import { captureLog, inProcessLogger } from '../helpers/test-log.js';

export const PREFIX = '/registry';
export const FAST_KMS = { statusHealthyMs: 500, statusUnhealthyMs: 500, probePositiveTtlMs: 300, probeNegativeTtlMs: 300 };

/** A running `atrest rotate` child: its stderr as it comes, and its end. */
export interface RotateProcess {
  child: ChildProcess;
  stderr(): string;
  done: Promise<Omit<CliResult, 'stdoutBytes'>>;
}

export interface RotateWorld {
  dir: string;
  /** The local backend's key file ('' for another backend). */
  keyFile: string;
  /** The backend's options, as BackendModule calls take them. */
  backendOptions: BackendOptions;
  configPath: string;
  etcd: EtcdCluster;
  endpoint: string;
  plugin: PluginServer;
  backend: KekBackend;
  /** The first API server; `servers` has them all (one shared data dir: same CA and token). */
  api: RunningApiServer;
  servers: RunningApiServer[];
  /** `atrest rotate` with the world's flags and `extra`. */
  rotate(extra?: string[]): Promise<CliResult>;
  /** The same as a child process one can kill. */
  spawnRotate(extra?: string[]): RotateProcess;
  /** The raw store (etcd) for planting and reading values. */
  store(): Promise<Store>;
  close(): Promise<void>;
}

export interface RotateWorldOptions {
  prefix?: string;
  apiOptions?: Partial<ApiServerOptions>;
  /** API servers on the etcd (default 1); rotate gets every one with --server. */
  servers?: number;
  /** Another KEK backend than a local key file: the module, its options and the same as CLI flags (key made already). */
  backend?: { module: BackendModule; options: BackendOptions; flags: string[]; env?: NodeJS.ProcessEnv };
}

export async function startRotateWorld(o: RotateWorldOptions = {}): Promise<RotateWorld> {
  const tmp = await makeTempDir(o.prefix ?? 'atrest-rotate-');
  const ctx = { log: inProcessLogger('kms-plugin') };
  const keyFile = o.backend ? '' : join(tmp.dir, 'kek.json');
  const chosen = o.backend ?? { module: localBackend, options: { keyFile }, flags: ['--key-file', keyFile] };
  if (!o.backend) await localBackend.initKey({ keyFile }, ctx);
  const backend = await chosen.module.open(chosen.options, ctx);
  const socket = join(tmp.dir, 'kms.sock');
  const [plugin, etcd] = await Promise.all([
    startPluginServer({ listen: `unix://${socket}`, backend, refreshIntervalMs: 100, log: ctx.log }),
    startEtcdCluster(1),
  ]);
  const endpoint = etcd.endpoints[0] as string;
  const configPath = writeKmsV2Config(tmp.dir, socket);
  const servers: RunningApiServer[] = [];
  for (let i = 0; i < (o.servers ?? 1); i++) {
    servers.push(await startApiServer({
      log: inProcessLogger('api-server'), securePort: 0, dataDir: join(tmp.dir, 'data'), etcdServers: endpoint,
      encryptionProviderConfig: configPath, kmsIntervals: FAST_KMS, ...o.apiOptions,
    }));
  }
  const api = servers[0]!;
  const stores: Store[] = [];
  const args = (extra: string[]): string[] => ['rotate', '--encryption-provider-config', configPath, '--etcd-servers', endpoint,
    '--backend', chosen.module.name, ...chosen.flags, '--kubeconfig', api.kubeconfigPath, ...servers.flatMap((s) => ['--server', s.url]),
    '--poll-interval', '200ms', '--timeout', '120s', ...extra];
  return {
    dir: tmp.dir, keyFile, backendOptions: chosen.options, configPath, etcd, endpoint, plugin, backend, api, servers,
    rotate: async (extra = []) => runCli(args(extra), { env: chosen.env ?? {} }),
    spawnRotate(extra = []) {
      const child = spawn(process.execPath, [cliPath, ...args(extra)], { cwd: repoRoot, env: { ...process.env, ...chosen.env }, stdio: ['ignore', 'pipe', 'pipe'] });
      captureLog('atrest-rotate', child.stderr);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      const done = new Promise<Omit<CliResult, 'stdoutBytes'>>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
      return { child, stderr: () => stderr, done };
    },
    async store() {
      const s = await openStore({ etcdServers: endpoint, dataDir: join(tmp.dir, 'unused') });
      stores.push(s);
      return s;
    },
    async close() {
      for (const s of stores) await s.close();
      for (const server of servers) await server.close();
      await plugin.close();
      await backend.close();
      await etcd.cleanup();
      await tmp.cleanup();
    },
  };
}

/** Seeds `count` secrets `s<i>` (value `value-<i>`) through the configuration's transformers, as the server would write them. */
export async function seedSecrets(w: RotateWorld, count: number): Promise<void> {
  const { store, close } = await kmsTransformers(w.configPath);
  try {
    const encrypted = store(await w.store());
    for (let i = 0; i < count; i++) await encrypted.create(`${PREFIX}/secrets/default/s${i}`, secretJson(`s${i}`, `value-${i}`));
  } finally {
    await close();
  }
}

/** The configuration's transformers in this process, over the plugin socket (as the server encrypts). */
export async function kmsTransformers(configPath: string): Promise<{ transformers: TransformerSet; store: (raw: Store) => EncryptedStore; close(): Promise<void> }> {
  const kms = createKmsProviders({ log: inProcessLogger('rotate-fixture'), intervals: FAST_KMS });
  const transformers = buildTransformers(parseEncryptionConfig(readFileSync(configPath, 'utf8'), configPath).config, { kms: kms.factory });
  await kms.ready();
  return {
    transformers,
    store: (raw) => new EncryptedStore(raw, (key) => transformers.forResource(parseStorageKey(PREFIX, key).groupResource)),
    close: async () => {
      await transformers.close();
      await kms.close();
    },
  };
}

/** A Secret object as the API server stores it (JSON). */
export function secretJson(name: string, value: string): Buffer {
  return Buffer.from(JSON.stringify({
    kind: 'Secret', apiVersion: 'v1',
    metadata: { name, namespace: 'default', uid: crypto.randomUUID(), creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z') },
    type: 'Opaque', data: { v: Buffer.from(value).toString('base64') },
  }));
}
