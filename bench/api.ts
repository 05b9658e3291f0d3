// Suite 3, api: create and get Secrets (1 KiB of data) with N concurrent HTTPS clients (keep-alive,
// token auth) against `atrest serve` processes (from source, as `atrest` runs them), on the embedded
// store and on a real etcd (test/helpers/etcd.ts), with identity, aesgcm, kms v1 and kms v2 as the
// write provider (kms through a real `atrest kms-plugin --backend local` on a UNIX socket). Ratios:
// each provider against identity on the same backend, measured in interleaved rounds (identity,
// aesgcm, kms v1, kms v2, identity, ...) so drifting load weighs on all alike; and etcd-backed
// creates/gets against raw etcd puts, create-if-absent transactions and gets made with the same
// client library (etcd3) at the same
// concurrency from this process. `--size`: the number of concurrent clients (default 8, quick 4).
// Set BENCH_API_CPU_PROF=<dir> to run every server under `node --cpu-prof` (profiles land in <dir>).
// The embedded store's creates are also compared with a raw better-sqlite3 loop in this process (one
// INSERT committed per call, WAL, synchronous=FULL: the store's durability settings), and the kms
// servers' plugin calls per create are read from their /metrics. BENCH_API_BACKENDS=embedded (or
// etcd) measures one backend only (while iterating on it; a full run measures both).
// BENCH_API_COMPARE=<dir>: a built checkout of another commit (its bin/atrest.js); its embedded
// identity and kms v1 servers join the rounds, so before/after figures come from one run.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { Etcd3 } from 'etcd3';
import { parse as parseYaml } from 'yaml';
import { startEtcdCluster, type EtcdCluster } from '../test/helpers/etcd.js';
import { makeTempDir, PluginProcess, repoRoot, runAtrest } from '../test/helpers/plugin.js';
import { measureRate, type BenchContext, type Row, type SuiteResult } from './lib.js';
import { atrestCommand } from './serve-process.js';

const PROVIDERS = ['identity', 'aesgcm', 'kms v1', 'kms v2'] as const;
type Provider = (typeof PROVIDERS)[number];
type Backend = 'embedded' | 'etcd';
const VALUE_BYTES = 1024;

export function encryptionConfig(p: Provider, socket: string): string {
  const provider = {
    identity: '- identity: {}',
    aesgcm: `- aesgcm:\n          keys: [{ name: k1, secret: ${randomBytes(32).toString('base64')} }]`,
    'kms v1': `- kms: { apiVersion: v1, name: bench-v1, endpoint: "unix://${socket}", cachesize: 1000, timeout: 3s }`,
    'kms v2': `- kms: { apiVersion: v2, name: bench-v2, endpoint: "unix://${socket}", timeout: 3s }`,
  }[p];
  return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      ${provider}
      - identity: {}
`;
}

/** One `atrest serve` child process and an HTTPS client for it. */
export class ServeProcess {
  url = '';
  private token = '';
  private agent: Agent | undefined;
  private child: ChildProcess | undefined;
  private stderr = '';

  constructor(readonly label: string, private readonly args: string[], private readonly profDir?: string, private readonly cli?: string) {}

  async start(): Promise<void> {
    const node = this.profDir ? ['--cpu-prof', '--cpu-prof-dir', this.profDir] : [];
    // The built CLI when dist/ is up to date with src/ (faster start), else the sources through tsx.
    const child = spawn(process.execPath, [...node, ...(this.cli ? [this.cli] : atrestCommand().argv), 'serve', ...this.args], {
      cwd: repoRoot, env: { ...process.env, ATREST_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stderr!.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-8192); });
    const first = await new Promise<string>((resolve, reject) => {
      const rl = createInterface({ input: child.stdout! });
      rl.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`atrest serve (${this.label}) exited with ${code}: ${this.stderr}`)));
    });
    const { url, kubeconfig } = JSON.parse(first) as { url: string; kubeconfig: string };
    const kc = parseYaml(readFileSync(kubeconfig, 'utf8')) as {
      clusters: Array<{ cluster: { 'certificate-authority-data': string } }>;
      users: Array<{ user: { token: string } }>;
    };
    this.url = url;
    this.token = kc.users[0]!.user.token;
    this.agent = new Agent({ keepAlive: true, maxSockets: 64, ca: Buffer.from(kc.clusters[0]!.cluster['certificate-authority-data'], 'base64') });
  }

  /** One request; resolves to the status code, rejects on anything but `expect`. */
  call(method: string, path: string, expect: number, body?: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { Authorization: `Bearer ${this.token}`, Accept: 'application/json' };
      if (body) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = String(body.length);
      }
      const req = request(new URL(path, this.url), { method, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode === expect) resolve();
          else reject(new Error(`${this.label}: ${method} ${path} → ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 300)}`));
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  /** GET `path` and return the body (for /metrics). */
  text(path: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = request(new URL(path, this.url), { headers: { Authorization: `Bearer ${this.token}` }, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString()) : reject(new Error(`${this.label}: GET ${path} → ${res.statusCode}`))));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  async stop(): Promise<void> {
    this.agent?.destroy();
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

export function secretBody(name: string, payload: string): Buffer {
  return Buffer.from(JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'default' }, type: 'Opaque', data: { value: payload } }));
}

interface Tally { ops: number; seconds: number }

/** The sum of `apiserver_envelope_encryption_kms_operations_latency_seconds_count` samples whose method ends in `/<method>`. */
export function kmsCalls(metrics: string, method: 'Encrypt' | 'Decrypt'): number {
  let n = 0;
  for (const line of metrics.split('\n')) {
    if (line.startsWith('apiserver_envelope_encryption_kms_operations_latency_seconds_count{') && line.includes(`KeyManagementService/${method}"`)) {
      n += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return n;
}

/**
 * The raw baseline of the embedded store: better-sqlite3 in this process, the store's pragmas (WAL,
 * synchronous=FULL) and table shape, one INSERT committed (and fsynced) per call.
 */
function rawSqlite(file: string): { insert: (name: string, value: Buffer) => void; close: () => void } {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(`CREATE TABLE kv (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, created INTEGER NOT NULL, deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL, prev_revision INTEGER NOT NULL, value BLOB NOT NULL); CREATE INDEX kv_name_id ON kv (name, id);`);
  const st = db.prepare('INSERT INTO kv (name, created, deleted, create_revision, prev_revision, value) VALUES (?, 1, 0, 0, 0, ?)');
  return { insert: (name, value) => { st.run(name, value); }, close: () => db.close() };
}
const rate = (t: Tally): number => (t.seconds > 0 ? t.ops / t.seconds : 0);

export async function run(ctx: BenchContext): Promise<SuiteResult> {
  const clients = ctx.size ?? (ctx.quick ? 4 : 8);
  const providers: readonly Provider[] = ctx.quick ? ['identity', 'kms v2'] : PROVIDERS;
  // Many short interleaved rounds: the load of other processes on these cores drifts within seconds.
  const rounds = ctx.quick ? 1 : 8;
  const slice = ctx.quick ? ctx.seconds : (ctx.seconds * 3) / rounds; // per round, per operation, per server
  const profDir = process.env['BENCH_API_CPU_PROF'];
  if (profDir) mkdirSync(profDir, { recursive: true });
  const { dir, cleanup } = await makeTempDir('atrest-bench-api-');
  const payload = randomBytes(VALUE_BYTES).toString('base64');
  let plugin: PluginProcess | undefined;
  let etcd: EtcdCluster | undefined;
  const servers = new Map<string, ServeProcess>();
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    // The KMS plugin (both APIs on one socket) and etcd, then every server of the matrix in parallel.
    const keyFile = join(dir, 'kek.json');
    const socket = join(dir, 'kms.sock');
    const init = await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
    if (init.code !== 0) throw new Error(`kms-plugin init-key failed: ${init.stderr}`);
    plugin = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile]);
    const only = process.env['BENCH_API_BACKENDS'];
    const backends: Backend[] = (['embedded', 'etcd'] as const).filter((b) => !only || only.split(',').includes(b));
    if (backends.includes('etcd')) etcd = await startEtcdCluster(1);
    await plugin.waitForEvent('start');
    for (const backend of backends) {
      for (const p of providers) {
        const id = `${backend}-${p.replace(' ', '')}`;
        const configFile = join(dir, `${id}.yaml`);
        writeFileSync(configFile, encryptionConfig(p, socket));
        const args = ['--secure-port', '0', '--data-dir', join(dir, id), '--encryption-provider-config', configFile];
        if (backend === 'etcd') args.push('--etcd-servers', etcd!.endpoints.join(','), '--etcd-prefix', `/${id}`);
        servers.set(`${backend}/${p}`, new ServeProcess(`${backend}, ${p}`, args, profDir));
      }
    }
    const compareTree = process.env['BENCH_API_COMPARE'];
    const compared: Provider[] = compareTree && backends.includes('embedded') ? ['identity', 'kms v1'] : [];
    for (const p of compared) {
      const id = `compare-${p.replace(' ', '')}`;
      const configFile = join(dir, `${id}.yaml`);
      writeFileSync(configFile, encryptionConfig(p, socket));
      servers.set(`embedded/${p}@compare`, new ServeProcess(`embedded, ${p} (${compareTree})`, ['--secure-port', '0', '--data-dir', join(dir, id), '--encryption-provider-config', configFile], profDir, join(compareTree!, 'bin', 'atrest.js')));
    }
    ctx.log(`starting ${servers.size} servers, etcd and the kms plugin`);
    await Promise.all([...servers.values()].map((s) => s.start()));

    const raw = etcd ? new Etcd3({ hosts: etcd.endpoints }) : undefined;
    const sqliteRaw = rawSqlite(join(dir, 'raw-sqlite.db'));
    const identityValue = secretBody('x'.repeat(12), payload); // what identity stores is about this size
    const tallies = new Map<string, Tally>();
    const add = (key: string, ops: number, perSecond: number) => {
      const t = tallies.get(key) ?? { ops: 0, seconds: 0 };
      t.ops += ops;
      t.seconds += perSecond > 0 ? ops / perSecond : 0;
      tallies.set(key, t);
    };
    const created = new Map<string, string[]>();
    let seq = 0;
    // Warm-up: JIT, TLS sessions, kms caches, etcd connections.
    for (const [key, s] of servers) {
      const names: string[] = [];
      created.set(key, names);
      await measureRate(async () => {
        const name = `w${seq++}`;
        await s.call('POST', '/api/v1/namespaces/default/secrets', 201, secretBody(name, payload));
        names.push(name);
      }, { seconds: Math.min(0.3, slice), concurrency: clients });
    }
    const rawKeys: string[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const backend of backends) {
        for (const key of [...providers.map((p) => `${backend}/${p}`), ...(backend === 'embedded' ? compared.map((p) => `embedded/${p}@compare`) : [])]) {
          const s = servers.get(key)!;
          const names = created.get(key)!;
          const c = await measureRate(async () => {
            const name = `s${seq++}`;
            await s.call('POST', '/api/v1/namespaces/default/secrets', 201, secretBody(name, payload));
            names.push(name);
          }, { seconds: slice, concurrency: clients });
          add(`${key}/create`, c.ops, c.perSecond);
          let i = 0;
          const g = await measureRate(() => s.call('GET', `/api/v1/namespaces/default/secrets/${names[(i++ * 7919) % names.length]}`, 200), { seconds: slice, concurrency: clients });
          add(`${key}/get`, g.ops, g.perSecond);
          ctx.log(`round ${round + 1}/${rounds} ${key}: ${Math.round(c.perSecond)} creates/s, ${Math.round(g.perSecond)} gets/s`);
        }
        if (backend === 'embedded') {
          const r = await measureRate(() => sqliteRaw.insert(`/raw/secrets/default/s${seq++}`, identityValue), { seconds: slice });
          add('raw/sqlite', r.ops, r.perSecond);
          ctx.log(`round ${round + 1}/${rounds} raw better-sqlite3: ${Math.round(r.perSecond)} insert+commit/s`);
        }
        if (backend === 'etcd') {
          const pr = await measureRate(async () => {
            const k = `/raw/secrets/default/s${seq++}`;
            await raw!.put(k).value(identityValue);
            rawKeys.push(k);
          }, { seconds: slice, concurrency: clients });
          add('raw/put', pr.ops, pr.perSecond);
          let i = 0;
          const gr = await measureRate(async () => {
            const v = await raw!.get(rawKeys[(i++ * 7919) % rawKeys.length]!).buffer();
            if (!v) throw new Error('raw etcd get found nothing');
          }, { seconds: slice, concurrency: clients });
          add('raw/get', gr.ops, gr.perSecond);
          // What a create is at its core: a create-if-absent transaction (compare create_revision = 0, put).
          const tr = await measureRate(async () => {
            const k = `/raw-txn/secrets/default/s${seq++}`;
            const res = await raw!.if(k, 'Create', '==', 0).then(raw!.put(k).value(identityValue)).commit();
            if (!res.succeeded) throw new Error('raw etcd create-if-absent txn did not apply');
          }, { seconds: slice, concurrency: clients });
          add('raw/txn', tr.ops, tr.perSecond);
          ctx.log(`round ${round + 1}/${rounds} raw etcd: ${Math.round(pr.perSecond)} puts/s, ${Math.round(tr.perSecond)} create txns/s, ${Math.round(gr.perSecond)} gets/s`);
        }
      }
    }
    raw?.close();
    sqliteRaw.close();
    // Plugin calls per create (the warm-up's creates included: every name created counts).
    const kmsPerCreate = new Map<string, { encrypt: number; decrypt: number }>();
    for (const [key, s] of servers) {
      if (!key.includes('kms')) continue;
      const m = await s.text('/metrics');
      const n = created.get(key)!.length;
      kmsPerCreate.set(key, { encrypt: kmsCalls(m, 'Encrypt') / n, decrypt: kmsCalls(m, 'Decrypt') / n });
    }

    const targetFor = (p: Provider): number | undefined => (p === 'kms v2' ? 0.9 : p === 'kms v1' ? 0.6 : undefined);
    for (const backend of backends) {
      for (const p of providers) {
        const k = kmsPerCreate.get(`${backend}/${p}`);
        if (k) rows.push({ name: `${backend}, ${p}, plugin calls per create`, metric: 'Encrypt calls / creates', value: k.encrypt, unit: 'calls', note: `Decrypt calls per create: ${k.decrypt.toFixed(3)} (the gets' DEK cache misses)` });
      }
      for (const op of ['create', 'get'] as const) {
        const base = rate(tallies.get(`${backend}/identity/${op}`)!);
        const baseName = `${backend}, identity, ${op}`;
        for (const p of providers) {
          const v = rate(tallies.get(`${backend}/${p}/${op}`)!);
          const row: Row = { name: `${backend}, ${p}, ${op}`, metric: `${op === 'create' ? 'creates' : 'gets'} (${clients} clients)`, value: v, unit: 'req/s' };
          if (p !== 'identity') {
            const ratio = v / base;
            const t = targetFor(p);
            Object.assign(row, { baseline: baseName, ratio }, t !== undefined ? { target: `≥ ${t.toFixed(2)}×`, met: ratio >= t } : {});
          }
          rows.push(row);
        }
      }
    }
    for (const p of compared) {
      const base = rate(tallies.get(`embedded/${p}@compare/create`)!);
      rows.push({ name: `embedded, ${p}, create (compare tree)`, metric: `creates (${clients} clients)`, value: base, unit: 'req/s', note: `BENCH_API_COMPARE=${compareTree}` });
      const v = rate(tallies.get(`embedded/${p}/create`)!);
      rows.push({
        name: `embedded, ${p}, create vs compare tree`, metric: `creates (${clients} clients)`, value: v, unit: 'req/s', baseline: `embedded, ${p}, create (compare tree)`, ratio: v / base,
        ...(p === 'identity' ? { target: '≥ 2.00×', met: v / base >= 2 } : {}),
      });
    }
    if (backends.includes('embedded')) {
      const rawIns = rate(tallies.get('raw/sqlite')!);
      rows.push({ name: 'raw better-sqlite3 insert+commit', metric: 'inserts (1 caller, 1 commit each)', value: rawIns, unit: 'ops/s' });
      for (const p of providers) {
        const c = rate(tallies.get(`embedded/${p}/create`)!);
        const ratio = c / rawIns;
        rows.push({
          name: `embedded, ${p}, create vs raw sqlite`, metric: `creates (${clients} clients)`, value: c, unit: 'req/s', baseline: 'raw better-sqlite3 insert+commit', ratio,
          ...(p === 'identity' ? { target: '≥ 0.50×', met: ratio >= 0.5 } : {}),
        });
      }
    }
    if (backends.includes('etcd')) {
      const rawPut = rate(tallies.get('raw/put')!);
      const rawGet = rate(tallies.get('raw/get')!);
      const rawTxn = rate(tallies.get('raw/txn')!);
      rows.push({ name: 'raw etcd put (etcd3)', metric: `puts (${clients} clients)`, value: rawPut, unit: 'req/s' });
      rows.push({ name: 'raw etcd create txn (etcd3)', metric: `txns (${clients} clients)`, value: rawTxn, unit: 'req/s', baseline: 'raw etcd put (etcd3)', ratio: rawTxn / rawPut });
      rows.push({ name: 'raw etcd get (etcd3)', metric: `gets (${clients} clients)`, value: rawGet, unit: 'req/s' });
      for (const p of providers) {
        const c = rate(tallies.get(`etcd/${p}/create`)!);
        const ratio = c / rawPut;
        rows.push({ name: `etcd, ${p}, create vs raw put`, metric: `creates (${clients} clients)`, value: c, unit: 'req/s', baseline: 'raw etcd put (etcd3)', ratio, target: '≥ 0.40×', met: ratio >= 0.4 });
      }
      for (const p of providers) {
        const c = rate(tallies.get(`etcd/${p}/create`)!);
        rows.push({ name: `etcd, ${p}, create vs raw txn`, metric: `creates (${clients} clients)`, value: c, unit: 'req/s', baseline: 'raw etcd create txn (etcd3)', ratio: c / rawTxn });
      }
      for (const p of providers) {
        const g = rate(tallies.get(`etcd/${p}/get`)!);
        rows.push({ name: `etcd, ${p}, get vs raw get`, metric: `gets (${clients} clients)`, value: g, unit: 'req/s', baseline: 'raw etcd get (etcd3)', ratio: g / rawGet });
      }
    }
    notes.push(
      `${clients} concurrent keep-alive HTTPS clients in one load-generator process; ${rounds} interleaved round(s) of ${slice} s per server and operation (${rounds * slice} s each in all); Secrets carry ${VALUE_BYTES} random bytes (base64 in JSON)`,
      'every server, the kms plugin, etcd and the load generator share the same cores: req/s are bounded by total CPU; read the ratios',
      'embedded store: SQLite with synchronous=full; concurrent writes share one commit (group commit), each acknowledged only after its commit is fsynced; gets are served from SQLite without fsync; the raw better-sqlite3 baseline commits (and fsyncs) every insert on its own, one caller',
      'raw etcd puts are plain puts of a value the size of a stored identity Secret, raw create txns the same value in a create-if-absent transaction (compare create_revision = 0, put); an atrest create is one such transaction (also comparing the namespace revision from the namespace cache) plus the API work (auth, decode, validation, defaulting, JSON) and the transformer',
    );
    notes.push(`servers ran from ${atrestCommand().how === 'dist' ? 'the built CLI (dist/)' : atrestCommand().how === 'tsx' ? 'the sources through tsx' : 'a private build'}`);
    if (ctx.quick) notes.push('quick mode: identity and kms v2 only');
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop()));
    await plugin?.stop();
    await etcd?.cleanup();
    await cleanup();
  }
  return { suite: 'api', title: 'API server: Secret creates and gets over HTTPS, per write provider and backend', rows, notes };
}
