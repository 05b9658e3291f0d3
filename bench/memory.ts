// Suite 5, memory: peak RSS (VmHWM from /proc/<pid>/status) of `atrest serve` holding N secrets
// (default 100,000; quick 2,000; `--size N` sets N) on the embedded store with aesgcm, and of the KMS
// plugin under load. Baselines measured in the same run: the same server on an empty store, the
// plugin before the load.
//
// The N secrets (256 random bytes of data each, ~0.6 KB of JSON) are written straight through the
// storage layer (EncryptedStore over the embedded store with the same config, synchronous=normal)
// into the data dir before `atrest serve` starts: creating them through the API would take minutes
// and measure the create path, not the holding. Then, through the API: every secret listed in pages
// of 500 (limit/continue, as kubectl's default --chunk-size and informers do), then one unpaginated
// list of all of them (a client asking without limit), the peak read after each step. The plugin: `atrest
// kms-plugin --backend local` taking v2 Encrypt and Decrypt from 32 concurrent callers.
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseEncryptionConfig } from '../src/config/load.js';
import { parseListenAddress } from '../src/plugin/listen-address.js';
import { PluginSocketClient } from '../src/plugin/socket-client.js';
import { EncryptedStore } from '../src/storage/encrypted-store.js';
import { openStore } from '../src/storage/open.js';
import { buildTransformers } from '../src/transform/build.js';
import { makeTempDir, repoRoot, runAtrest, waitFor } from '../test/helpers/plugin.js';
import { writeAesGcmConfig } from '../test/helpers/server.js';
import { measureRate, withMax, type BenchContext, type Row, type SuiteResult } from './lib.js';
import { atrestCommand, procMemoryMb, startServe, type ServeProcess } from './serve-process.js';

const TARGET_MB = 200;
const PAGE = 500;

/** Writes `count` Secrets into namespace `default` of the embedded store in `dataDir`, encrypted with `configPath`. */
async function seedSecrets(dataDir: string, configPath: string, count: number, log: (m: string) => void): Promise<void> {
  const { config } = parseEncryptionConfig(readFileSync(configPath), configPath);
  const transformer = buildTransformers(config).forResource({ group: '', resource: 'secrets' });
  const store = await openStore({ dataDir, sqlite: { synchronous: 'normal', compactIntervalMs: 0 } });
  const encrypted = new EncryptedStore(store, () => transformer);
  const created = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  try {
    for (let i = 0; i < count; i++) {
      const name = `bench-${String(i).padStart(6, '0')}`;
      const obj = {
        kind: 'Secret', apiVersion: 'v1',
        metadata: { name, namespace: 'default', uid: randomUUID(), creationTimestamp: created },
        type: 'Opaque',
        data: { value: randomBytes(256).toString('base64') },
      };
      await encrypted.create(`/registry/secrets/default/${name}`, Buffer.from(JSON.stringify(obj)));
      if (i > 0 && i % 20_000 === 0) log(`seeded ${i} secrets`);
    }
  } finally {
    await store.close();
  }
}

async function listAll(server: ServeProcess, count: number): Promise<{ pages: number }> {
  let items = 0;
  let pages = 0;
  let cont: string | undefined;
  do {
    const r = await server.call('GET', `/api/v1/namespaces/default/secrets?limit=${PAGE}${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`);
    if (r.status !== 200) throw new Error(`paged list: HTTP ${r.status}: ${r.text.slice(0, 300)}`);
    const body = JSON.parse(r.text) as { items: unknown[]; metadata: { continue?: string } };
    items += body.items.length;
    pages++;
    cont = body.metadata.continue || undefined;
  } while (cont);
  if (items !== count) throw new Error(`paged list returned ${items} secrets, not ${count}`);
  return { pages };
}

async function serveRows(ctx: BenchContext, dir: string, count: number): Promise<Row[]> {
  const configPath = writeAesGcmConfig(dir).path;
  const rows: Row[] = [];
  // Baseline: the same server, same config, empty store.
  const empty = await startServe(join(dir, 'empty'), ['--encryption-provider-config', configPath]);
  let emptyHwm: number;
  try {
    const r = await empty.call('GET', '/api/v1/namespaces/default/secrets');
    if (r.status !== 200) throw new Error(`list on the empty server: HTTP ${r.status}`);
    emptyHwm = procMemoryMb(empty.pid).hwm;
  } finally {
    await empty.stop();
  }
  rows.push({ name: 'atrest serve, empty store', metric: 'peak RSS', value: emptyHwm, unit: 'MB', note: 'baseline' });

  const dataDir = join(dir, 'data');
  const t0 = performance.now();
  await seedSecrets(dataDir, configPath, count, ctx.log);
  ctx.log(`seeded ${count} secrets in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const server = await startServe(dataDir, ['--encryption-provider-config', configPath]);
  try {
    const n = count.toLocaleString('en-US');
    const started = procMemoryMb(server.pid);
    rows.push({ name: `atrest serve, ${n} secrets, started`, metric: 'peak RSS', value: started.hwm, unit: 'MB', baseline: 'atrest serve, empty store', ratio: started.hwm / emptyHwm });
    const t1 = performance.now();
    const { pages } = await listAll(server, count);
    const pagedSeconds = (performance.now() - t1) / 1000;
    const paged = procMemoryMb(server.pid);
    rows.push({ ...withMax({ name: `atrest serve, ${n} secrets, after paged list`, metric: 'peak RSS', value: paged.hwm, unit: 'MB' }, TARGET_MB),
      baseline: 'atrest serve, empty store', ratio: paged.hwm / emptyHwm, note: `${pages} pages of ${PAGE} in ${pagedSeconds.toFixed(1)} s` });
    const t2 = performance.now();
    const r = await server.call('GET', '/api/v1/secrets');
    const fullSeconds = (performance.now() - t2) / 1000;
    if (r.status !== 200) throw new Error(`full list: HTTP ${r.status}: ${r.text.slice(0, 300)}`);
    const listed = (JSON.parse(r.text) as { items: unknown[] }).items.length;
    if (listed < count) throw new Error(`full list returned ${listed} secrets, fewer than ${count}`);
    const full = procMemoryMb(server.pid);
    rows.push({ ...withMax({ name: `atrest serve, ${n} secrets, after full list`, metric: 'peak RSS', value: full.hwm, unit: 'MB' }, TARGET_MB),
      baseline: 'atrest serve, empty store', ratio: full.hwm / emptyHwm, note: `one unpaginated list: ${(r.text.length / 2 ** 20).toFixed(0)} MiB of JSON in ${fullSeconds.toFixed(1)} s; RSS now ${full.rss.toFixed(0)} MB` });
  } finally {
    const code = await server.stop();
    if (code !== 0) ctx.log(`atrest serve exited ${code}: ${server.stderr().slice(-500)}`);
  }
  return rows;
}

async function pluginRows(ctx: BenchContext, dir: string): Promise<Row[]> {
  const keyFile = join(dir, 'kek.json');
  await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
  const socket = join(dir, 'kms.sock');
  const cmd = atrestCommand();
  const proc = spawn(process.execPath, [...cmd.argv, 'kms-plugin', '--listen', `unix://${socket}`, '--key-file', keyFile], {
    cwd: repoRoot, env: { ...process.env, ATREST_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'ignore'],
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  try {
    await waitFor('the plugin socket', () => existsSync(socket), 30_000);
    const client = new PluginSocketClient(parseListenAddress(`unix://${socket}`), 10_000);
    try {
      await client.roundTrip();
      const idle = procMemoryMb(proc.pid!).hwm;
      const dek = randomBytes(32);
      const wrapped = await client.encrypt(dek);
      const seconds = ctx.quick ? ctx.seconds : Math.max(ctx.seconds, 1);
      const enc = await measureRate(() => client.encrypt(dek), { seconds, concurrency: 32 });
      const dec = await measureRate(() => client.decrypt(wrapped.ciphertext, wrapped.keyId, wrapped.annotations), { seconds, concurrency: 32 });
      const loaded = procMemoryMb(proc.pid!).hwm;
      return [
        { name: 'atrest kms-plugin (local), idle', metric: 'peak RSS', value: idle, unit: 'MB', note: 'baseline' },
        { name: 'atrest kms-plugin (local), after 32-caller load', metric: 'peak RSS', value: loaded, unit: 'MB', baseline: 'atrest kms-plugin (local), idle', ratio: loaded / idle,
          note: `${Math.round(enc.ops)} Encrypt + ${Math.round(dec.ops)} Decrypt calls over ${2 * seconds} s` },
      ];
    } finally {
      client.close();
    }
  } finally {
    proc.kill('SIGTERM');
    await exited;
  }
}

export async function run(ctx: BenchContext): Promise<SuiteResult> {
  const count = ctx.size ?? (ctx.quick ? 2_000 : 100_000);
  const cmd = atrestCommand(!ctx.quick, ctx.log); // RSS through tsx would include its loader
  const { dir, cleanup } = await makeTempDir('atrest-bench-memory-');
  try {
    const rows = [...await serveRows(ctx, dir, count), ...await pluginRows(ctx, dir)];
    return {
      suite: 'memory',
      title: `Memory: peak RSS (VmHWM) of atrest serve holding ${count.toLocaleString('en-US')} secrets (embedded store, aesgcm) and of the KMS plugin under load`,
      rows,
      notes: [
        `secrets: 256 random bytes of data each, seeded through EncryptedStore before serve starts; paged list = limit ${PAGE} + continue through all; full list = GET /api/v1/secrets without limit`,
        `processes run ${{ dist: 'the built CLI (bin/atrest.js)', 'bench build': 'a fresh build of the CLI (node_modules/.cache/atrest-bench; dist/ was older than src/)', tsx: 'from source through tsx (dist/ older than src/; quick mode does not build): the tsx loader adds ~25 MB to every figure' }[cmd.how]}`,
        `target ${TARGET_MB} MB is issue #7's for 100,000 secrets${count === 100_000 ? '' : ` (this run: ${count.toLocaleString('en-US')})`}`,
      ],
    };
  } finally {
    await cleanup();
  }
}
