// Suite hierarchy (issue #21): the key hierarchy of the remote backends against the real PyKMIP
// server and SoftHSM2, paired in one run with the local-file backend (`atrest kms-plugin` processes
// from source, each with --health-listen for its metrics):
//   1. v2 Encrypt calls/s at 1, 8 and 32 callers per backend (node grpc-js client, one channel, as
//      bench/plugin.ts), kmip and pkcs11 as ratios of local (target ≥ 0.90×); and the same Encrypt
//      in-process (backend.encrypt, no gRPC), which shows the hierarchy's own cost;
//   2. remote calls per 10,000 v2 Encrypts, counted from the plugin's own metric
//      atrest_kms_plugin_remote_kek_calls_total: wrap+unwrap (target ≤ 2), and every remote call
//      including the periodic refresh/verify of the remote key (time-driven, not per Encrypt);
//   3. kms v1 cold start: 10,000 v1 values written by one plugin process, then Decrypted by a freshly
//      started one: its remote unwraps (goal: one per local KEK; before the hierarchy: one per value)
//      and the Decrypt rate.
// Rates: the median of 3 rounds that alternate the backends (1 round with --quick).
// --quick: 300 values and Encrypts instead of 10,000, cold start with kmip only. `--size` sets the count.
import { randomBytes } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import * as V1 from '../src/gen/v1beta1/api_pb.js';
import { join } from 'node:path';
import { parseListenAddress } from '../src/plugin/listen-address.js';
import { PluginSocketClient } from '../src/plugin/socket-client.js';
import { makeTempDir, PluginProcess, runAtrest } from '../test/helpers/plugin.js';
import { freePort, startPykmip, type PykmipServer } from '../test/helpers/pykmip.js';
import { createSoftHsm, type SoftHsm } from '../test/helpers/softhsm.js';
import { sample } from '../test/helpers/hierarchy.js';
import { measureRate, withRatio, type BenchContext, type Row, type SuiteResult } from './lib.js';

const CALLERS = [1, 8, 32] as const;
const REMOTE = ['kmip', 'pkcs11'] as const;
type Backend = 'local' | (typeof REMOTE)[number];

interface Plugin { socket: string; metrics(): Promise<string>; stop(): Promise<void> }

async function startPlugin(dir: string, name: string, env: NodeJS.ProcessEnv, args: string[] = []): Promise<Plugin> {
  const socket = join(dir, `${name}.sock`);
  const port = await freePort();
  const plugin = new PluginProcess(['--listen', `unix://${socket}`, '--health-listen', `127.0.0.1:${port}`, ...args], env);
  try {
    await plugin.waitForEvent('start', 60_000);
  } catch (err) {
    await plugin.stop();
    throw err;
  }
  return { socket, metrics: async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), stop: async () => { await plugin.stop(); } };
}

/** Sum of atrest_kms_plugin_remote_kek_calls_total over the given operations (every outcome). */
function remoteCalls(metrics: string, operations: readonly string[]): number {
  let n = 0;
  for (const op of operations) for (const outcome of ['ok', 'unavailable', 'refused']) n += sample(metrics, `atrest_kms_plugin_remote_kek_calls_total{operation="${op}",outcome="${outcome}"}`) ?? 0;
  return n;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function inBatches<T>(count: number, batch: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < count; i += batch) out.push(...await Promise.all(Array.from({ length: Math.min(batch, count - i) }, (_, j) => fn(i + j))));
  return out;
}

export async function run(ctx: BenchContext): Promise<SuiteResult> {
  const rows: Row[] = [];
  const notes: string[] = [];
  const count = ctx.size ?? (ctx.quick ? 300 : 10_000);
  // Quick mode (the CI smoke run) does the cold start with kmip only: each one starts two more plugins.
  const coldStart: readonly (typeof REMOTE)[number][] = ctx.quick ? ['kmip'] : REMOTE;
  const { dir, cleanup } = await makeTempDir('atrest-bench-hierarchy-');
  let kmip: PykmipServer | undefined;
  let hsm: SoftHsm | undefined;
  const running: Plugin[] = [];
  try {
    // ---- the three backends ----
    const keyFile = join(dir, 'kek.json');
    await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
    kmip = await startPykmip();
    hsm = await createSoftHsm({ tokenLabel: 'atrest-bench', setProcessEnv: false });
    const envs: Record<Backend, NodeJS.ProcessEnv> = {
      local: { ATREST_KEY_FILE: keyFile },
      kmip: {
        ATREST_KMS_PLUGIN_BACKEND: 'kmip', ATREST_KMIP_ENDPOINT: kmip.endpoint, ATREST_KMIP_CA: kmip.pki.client.caPath,
        ATREST_KMIP_CERT: kmip.pki.client.certPath, ATREST_KMIP_KEY: kmip.pki.client.keyPath, ATREST_KMIP_KEY_NAME: 'bench-kek',
      },
      pkcs11: {
        ...hsm.env, ATREST_KMS_PLUGIN_BACKEND: 'pkcs11', ATREST_PKCS11_MODULE: hsm.modulePath, ATREST_PKCS11_TOKEN_LABEL: hsm.token.label,
        ATREST_PKCS11_PIN_FILE: hsm.token.pinFile, ATREST_PKCS11_KEY_LABEL: 'bench-kek',
      },
    };
    for (const b of REMOTE) {
      const init = await runAtrest(['kms-plugin', 'init-key'], envs[b]);
      if (init.code !== 0) throw new Error(`${b} init-key failed: ${init.stderr}`);
    }
    const plugins = {} as Record<Backend, Plugin>;
    const started = await Promise.allSettled((['local', ...REMOTE] as const).map(async (b) => { running.push(plugins[b] = await startPlugin(dir, b, envs[b])); }));
    for (const r of started) if (r.status === 'rejected') throw r.reason;

    // ---- 1. v2 Encrypt calls/s, paired ----
    const dek = randomBytes(32);
    const clients = {} as Record<Backend, PluginSocketClient>;
    for (const b of ['local', ...REMOTE] as const) {
      clients[b] = new PluginSocketClient(parseListenAddress(`unix://${plugins[b].socket}`), 10_000);
      await measureRate(() => clients[b].encrypt(dek), { seconds: ctx.quick ? 0.1 : 0.5, concurrency: 8 });
    }
    // Rounds alternate the backends, and each row is the median of its rounds: on a shared machine
    // the load moves during a run, and this pairs the backends under the same load.
    const rounds = ctx.quick ? 1 : 3;
    for (const callers of CALLERS) {
      const rates: Record<Backend, number[]> = { local: [], kmip: [], pkcs11: [] };
      for (let round = 0; round < rounds; round++) {
        for (const b of ['local', ...REMOTE] as const) {
          ctx.log(`${b}: v2 Encrypt x${callers} (round ${round + 1} of ${rounds})`);
          rates[b].push((await measureRate(() => clients[b].encrypt(dek), { seconds: ctx.seconds, concurrency: callers })).perSecond);
        }
      }
      const row = (b: Backend): Row => ({ name: `${b}, v2 Encrypt, ${callers} caller${callers === 1 ? '' : 's'}`, metric: `calls/s (median of ${rounds})`, value: median(rates[b]), unit: 'calls/s' });
      rows.push(row('local'), ...REMOTE.map((b) => withRatio(row(b), row('local'), 0.9)));
    }

    // ---- 2. remote calls per `count` v2 Encrypts ----
    for (const b of REMOTE) {
      const before = await plugins[b].metrics();
      const started = performance.now();
      await inBatches(count, 32, () => clients[b].encrypt(dek));
      const seconds = (performance.now() - started) / 1000;
      const after = await plugins[b].metrics();
      const data = remoteCalls(after, ['wrap', 'unwrap']) - remoteCalls(before, ['wrap', 'unwrap']);
      const all = remoteCalls(after, ['wrap', 'unwrap', 'refresh', 'verify']) - remoteCalls(before, ['wrap', 'unwrap', 'refresh', 'verify']);
      rows.push({ name: `${b}, ${count.toLocaleString('en-US')} v2 Encrypts`, metric: 'remote wrap+unwrap calls', value: data, unit: 'calls', target: '≤ 2', met: data <= 2 },
        { name: `${b}, ${count.toLocaleString('en-US')} v2 Encrypts`, metric: 'all remote calls (+ refresh/verify)', value: all, unit: 'calls', note: `over ${seconds.toFixed(1)} s; refresh every 5 s, verify every 60 s` });
    }
    for (const c of Object.values(clients)) c.close();

    // ---- 1b. the same Encrypt in-process, without gRPC (the hierarchy's own cost, no client bound) ----
    const { localBackend } = await import('../src/plugin/backends/local.js');
    const { kmipBackend } = await import('../src/plugin/backends/kmip.js');
    const { pkcs11Backend } = await import('../src/plugin/backends/pkcs11.js');
    const { HierarchyKek } = await import('../src/plugin/hierarchy/kek.js');
    const { readHierarchySettings } = await import('../src/plugin/hierarchy/config.js');
    const { silentLogger } = await import('../src/log.js');
    const context = { log: silentLogger() };
    const opts = (env: NodeJS.ProcessEnv): Record<string, string | undefined> => ({
      keyFile: env['ATREST_KEY_FILE'], kmipEndpoint: env['ATREST_KMIP_ENDPOINT'], kmipCa: env['ATREST_KMIP_CA'], kmipCert: env['ATREST_KMIP_CERT'],
      kmipKey: env['ATREST_KMIP_KEY'], kmipKeyName: env['ATREST_KMIP_KEY_NAME'], pkcs11Module: env['ATREST_PKCS11_MODULE'],
      pkcs11TokenLabel: env['ATREST_PKCS11_TOKEN_LABEL'], pkcs11PinFile: env['ATREST_PKCS11_PIN_FILE'], pkcs11KeyLabel: env['ATREST_PKCS11_KEY_LABEL'],
    });
    process.env['SOFTHSM2_CONF'] = hsm.env['SOFTHSM2_CONF'];
    const backends = {
      local: await localBackend.open(opts(envs.local), context),
      kmip: await HierarchyKek.open(await kmipBackend.open(opts(envs.kmip), context), readHierarchySettings({}), { ...context, endpoint: 'kmip' }),
      pkcs11: await HierarchyKek.open(await pkcs11Backend.open(opts(envs.pkcs11), context), readHierarchySettings({}), { ...context, endpoint: 'pkcs11' }),
    };
    try {
      const rates: Record<Backend, number[]> = { local: [], kmip: [], pkcs11: [] };
      for (let round = 0; round < (ctx.quick ? 1 : 3); round++) {
        for (const b of ['local', ...REMOTE] as const) {
          rates[b].push((await measureRate(() => backends[b].encrypt(dek, { annotations: true }), { seconds: ctx.seconds / 2, concurrency: 1 })).perSecond);
        }
      }
      const row = (b: Backend): Row => ({ name: `${b}, backend.encrypt in-process`, metric: 'calls/s (no gRPC)', value: median(rates[b]), unit: 'calls/s' });
      rows.push(row('local'), ...REMOTE.map((b) => withRatio(row(b), row('local'), 0.9)));
    } finally {
      for (const k of Object.values(backends)) await k.close();
    }

    // ---- 3. kms v1 cold start ----
    const v1Encrypt = (c: PluginSocketClient, plain: Uint8Array) =>
      c.unary('/v1beta1.KeyManagementService/Encrypt', V1.EncryptRequestSchema, V1.EncryptResponseSchema, create(V1.EncryptRequestSchema, { version: 'v1beta1', plain }));
    const v1Decrypt = (c: PluginSocketClient, cipher: Uint8Array) =>
      c.unary('/v1beta1.KeyManagementService/Decrypt', V1.DecryptRequestSchema, V1.DecryptResponseSchema, create(V1.DecryptRequestSchema, { version: 'v1beta1', cipher }));
    const written = await Promise.all(coldStart.map(async (b) => {
      const writer = await startPlugin(dir, `${b}-writer`, envs[b]);
      const wc = new PluginSocketClient(parseListenAddress(`unix://${writer.socket}`), 10_000);
      try {
        ctx.log(`${b}: writing ${count} kms v1 values`);
        const values = await inBatches(count, 64, async () => {
          const d = randomBytes(32);
          return { d, cipher: (await v1Encrypt(wc, d)).cipher };
        });
        return { values, localKeks: remoteCalls(await writer.metrics(), ['wrap']) };
      } finally {
        wc.close();
        await writer.stop();
      }
    }));
    const readers = await Promise.all(coldStart.map((b) => startPlugin(dir, `${b}-reader`, envs[b])));
    running.push(...readers);
    for (const [i, b] of coldStart.entries()) {
      const { values, localKeks } = written[i]!;
      const reader = readers[i]!;
      const rc = new PluginSocketClient(parseListenAddress(`unix://${reader.socket}`), 10_000);
      const before = remoteCalls(await reader.metrics(), ['unwrap']);
      ctx.log(`${b}: cold start, decrypting ${count} kms v1 values`);
      const t0 = performance.now();
      let wrong = 0;
      await inBatches(values.length, 64, async (j) => {
        const v = values[j]!;
        if (!Buffer.from((await v1Decrypt(rc, v.cipher)).plain).equals(v.d)) wrong++;
      });
      const seconds = (performance.now() - t0) / 1000;
      const unwraps = remoteCalls(await reader.metrics(), ['unwrap']) - before;
      rc.close();
      if (wrong > 0) throw new Error(`${b}: ${wrong} values decrypted wrong`);
      const name = `${b}, kms v1 cold start, ${count.toLocaleString('en-US')} values`;
      rows.push({ name, metric: 'remote unwraps', value: unwraps, unit: 'calls', target: `= ${localKeks} (local KEKs)`, met: unwraps === localKeks, note: `before the hierarchy: ${count.toLocaleString('en-US')}` },
        { name, metric: 'Decrypts/s (64 at a time)', value: count / seconds, unit: 'calls/s' });
    }
    notes.push(`${ctx.seconds} s per rate measurement; node client (grpc-js in the bench process, one channel) — it costs ~220–300 µs CPU per call, so the three plugins are measured with the same client bound`);
    notes.push('kmip = Debian PyKMIP server (AES-GCM, KMIP 1.4) on loopback; pkcs11 = SoftHSM2, --pkcs11-call-mode async; defaults --local-kek-max-age 24h, --local-kek-max-uses 1000000');
  } finally {
    for (const p of running.reverse()) await p.stop().catch(() => undefined);
    await kmip?.cleanup();
    await hsm?.cleanup();
    await cleanup();
  }
  return {
    suite: 'hierarchy',
    title: 'Key hierarchy (issue #21): kmip (PyKMIP) and pkcs11 (SoftHSM2) plugins vs the local-file backend; remote calls per Encrypt; kms v1 cold start',
    rows,
    notes,
  };
}
