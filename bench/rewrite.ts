// Suite 4, re-encryption: `atrest rewrite` of N secrets (default 10,000; quick 200; `--size N`) and a
// StorageVersionMigration of them run by `atrest serve` itself, against the kubectl pipeline the
// Kubernetes docs give (`kubectl get secrets --all-namespaces -o json | kubectl replace -f -`), on the
// same kind of server: `atrest serve` on the embedded store, and (full runs only) on a real
// one-member etcd. BENCH_REWRITE_BACKENDS=embedded skips etcd.
//
// The migration measured: secrets written with aescbc, the server (and the tool) now configured with
// kms v2 first (a real `atrest kms-plugin`-equivalent plugin server, local backend, in this process)
// and aescbc still readable. All runs start from identical stores (the embedded store: one seeded
// data dir, copied; etcd: key prefixes seeded alike). The migration is timed from its create request
// to the moment a poll (every 20 ms) sees it Succeeded. Rewrite and migration run twice each, in the
// order rewrite, migration, migration, rewrite (a shared machine's load weighs on both alike); the
// faster run of each counts.
// While each run goes, a background writer PATCHes a random secret through the API 20 times a second
// (labels only), as a live cluster would: kubectl's replace of an object changed since its get fails
// with a Conflict and leaves it stale; `atrest rewrite` compares-and-swaps, re-reads and retries.
// After each run `atrest rewrite --dry-run` counts what is still stale. The figures to read are the
// ratios of secrets/s (issue #7 target: ≥ 20× kubectl, with zero conflicts left unresolved; issue #22:
// the migration ≥ 0.8× atrest rewrite and ≥ 20× kubectl).
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { parseEncryptionConfig } from '../src/config/load.js';
import { silentLogger } from '../src/log.js';
import { localBackend } from '../src/plugin/backends/local.js';
import { startPluginServer } from '../src/plugin/server.js';
import { EncryptedStore } from '../src/storage/encrypted-store.js';
import { openEtcdStore } from '../src/storage/etcd.js';
import { openStore } from '../src/storage/open.js';
import { buildTransformers } from '../src/transform/build.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../test/helpers/etcd.js';
import { KUBECTL, kubectlAvailable } from '../test/helpers/kubectl.js';
import { makeTempDir, repoRoot } from '../test/helpers/plugin.js';
import { withRatio, type BenchContext, type Row, type SuiteResult } from './lib.js';
import { atrestCommand, startServe, type ServeProcess } from './serve-process.js';

const TARGET_RATIO = 20;
/** A StorageVersionMigration against `atrest rewrite` (issue #22). */
const MIGRATION_VS_REWRITE = 0.8;
const SVM_PATH = '/apis/storagemigration.k8s.io/v1beta1/storageversionmigrations';
const BACKGROUND_PATCHES_PER_SECOND = 20;
const AESCBC_KEY = randomBytes(32).toString('base64');

const oldConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc: { keys: [{ name: key1, secret: "${AESCBC_KEY}" }] }
      - identity: {}
`;

function newConfig(socket: string): string {
  return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms: { apiVersion: v2, name: bench-kms, endpoint: "unix://${socket}", timeout: 3s }
      - aescbc: { keys: [{ name: key1, secret: "${AESCBC_KEY}" }] }
      - identity: {}
`;
}

/** Where a run's objects live: the embedded store in `dataDir`, or etcd under `prefix` (serve keeps its PKI in `dataDir`). */
interface Backend {
  dataDir: string;
  etcdServers?: string;
  prefix: string;
}

function storeArgs(b: Backend): string[] {
  return b.etcdServers ? ['--etcd-servers', b.etcdServers, '--etcd-prefix', b.prefix, '--data-dir', b.dataDir] : ['--data-dir', b.dataDir, '--etcd-prefix', b.prefix];
}

async function seed(b: Backend, count: number): Promise<string[]> {
  const transformer = buildTransformers(parseEncryptionConfig(oldConfig, 'old.yaml').config).forResource({ group: '', resource: 'secrets' });
  const store = await openStore(b.etcdServers ? { etcdServers: b.etcdServers } : { dataDir: b.dataDir, sqlite: { synchronous: 'normal', compactIntervalMs: 0 } });
  const encrypted = new EncryptedStore(store, () => transformer);
  const created = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const names = Array.from({ length: count }, (_, i) => `rw-${String(i).padStart(6, '0')}`);
  let next = 0;
  // etcd takes concurrent creates; the embedded store is synchronous underneath anyway.
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const name = names[next++]!;
      const obj = {
        kind: 'Secret', apiVersion: 'v1',
        metadata: { name, namespace: 'default', uid: randomUUID(), creationTimestamp: created },
        type: 'Opaque',
        data: { value: randomBytes(256).toString('base64') },
      };
      await encrypted.create(`${b.prefix}/secrets/default/${name}`, Buffer.from(JSON.stringify(obj)));
    }
  };
  try {
    await Promise.all(Array.from({ length: b.etcdServers ? 32 : 1 }, worker));
  } finally {
    await store.close();
  }
  return names;
}

/** PATCHes a random secret's labels `perSecond` times a second until stopped; counts what it did. */
function backgroundWriter(server: ServeProcess, names: string[], perSecond: number): { stop: () => Promise<{ patched: number; failed: number }> } {
  let patched = 0;
  let failed = 0;
  let inFlight: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    const name = names[Math.floor(Math.random() * names.length)]!;
    inFlight = server.call('PATCH', `/api/v1/namespaces/default/secrets/${name}`, { metadata: { labels: { touched: String(Date.now()) } } }, 'application/merge-patch+json')
      .then((r) => { if (r.status === 200) patched++; else failed++; }, () => { failed++; });
  }, 1000 / perSecond);
  return {
    stop: async () => {
      clearInterval(timer);
      await inFlight;
      return { patched, failed };
    },
  };
}

function runCommand(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, seconds: (performance.now() - started) / 1000 }));
  });
}

interface RewriteJson { stale: number; rewritten: number; conflictsRetried: number; retriesExhausted: string[]; undecryptable: unknown[]; durationMs: number; ok: boolean }

async function atrestRewrite(backend: Backend, configPath: string, dryRun: boolean): Promise<RewriteJson & { seconds: number }> {
  const cmd = atrestCommand();
  const r = await runCommand(process.execPath, [...cmd.argv, 'rewrite', '--encryption-provider-config', configPath, ...storeArgs(backend), '--resources', 'secrets', '-o', 'json', ...(dryRun ? ['--dry-run'] : [])],
    { ...process.env, ATREST_LOG_LEVEL: 'warn' });
  if (r.code !== 0 && r.code !== 1) throw new Error(`atrest rewrite${dryRun ? ' --dry-run' : ''} exited ${r.code}: ${r.stderr.slice(-1000)}`);
  try {
    return { ...(JSON.parse(r.stdout) as RewriteJson), seconds: r.seconds };
  } catch {
    throw new Error(`atrest rewrite printed no JSON summary (exit ${r.code}): ${r.stderr.slice(-1000)}`);
  }
}

interface Measured { seconds: number; conflicts: number; errors: number; leftStale: number; patched: number; detail: string }

async function measureKubectl(backend: Backend, configPath: string, names: string[], home: string): Promise<Measured> {
  const server = await startServe(backend.dataDir, ['--encryption-provider-config', configPath, ...storeArgs(backend)]);
  try {
    const writer = backgroundWriter(server, names, BACKGROUND_PATCHES_PER_SECOND);
    const r = await runCommand('bash', ['-o', 'pipefail', '-c', `"${KUBECTL}" get secrets --all-namespaces -o json | "${KUBECTL}" replace -f -`],
      { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, KUBECONFIG: server.kubeconfig });
    const bg = await writer.stop();
    const errorLines = r.stderr.split('\n').filter((l) => l.startsWith('Error from server'));
    const conflicts = errorLines.filter((l) => /Conflict|modified/i.test(l)).length;
    const replaced = r.stdout.split('\n').filter((l) => / replaced$/.test(l)).length;
    if (replaced + errorLines.length < names.length) throw new Error(`kubectl replaced ${replaced} and failed ${errorLines.length} of ${names.length} (exit ${r.code}): ${r.stderr.slice(-800)}`);
    const check = await atrestRewrite(backend, configPath, true);
    return { seconds: r.seconds, conflicts, errors: errorLines.length, leftStale: check.stale, patched: bg.patched, detail: `${replaced} replaced` };
  } finally {
    await server.stop();
  }
}

async function measureAtrest(backend: Backend, configPath: string, names: string[]): Promise<Measured> {
  const server = await startServe(backend.dataDir, ['--encryption-provider-config', configPath, ...storeArgs(backend)]);
  try {
    const writer = backgroundWriter(server, names, BACKGROUND_PATCHES_PER_SECOND);
    const r = await atrestRewrite(backend, configPath, false);
    const bg = await writer.stop();
    const check = await atrestRewrite(backend, configPath, true);
    return {
      seconds: r.seconds, conflicts: r.retriesExhausted.length, errors: r.undecryptable.length, leftStale: check.stale, patched: bg.patched,
      detail: `${r.rewritten} rewritten, ${r.conflictsRetried} CAS conflicts retried, ${(r.durationMs / 1000).toFixed(2)} s inside the tool`,
    };
  } finally {
    await server.stop();
  }
}

interface MigrationStatus {
  metadata: { annotations?: Record<string, string> };
  status: { conditions?: Array<{ type: string; status: string; message: string }> };
}

/** A StorageVersionMigration of the secrets run by the server: from the create request to Succeeded as a 20 ms poll sees it. */
async function measureMigration(backend: Backend, configPath: string, names: string[]): Promise<Measured> {
  const server = await startServe(backend.dataDir, ['--encryption-provider-config', configPath, ...storeArgs(backend)]);
  try {
    // The controller runs on the replica holding the Lease: wait until this one does (its first try takes it).
    for (;;) {
      const metrics = await server.call('GET', '/metrics');
      if (/leader_election_master_status\{name="atrest-storage-version-migrator"\} 1/.test(metrics.text)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const writer = backgroundWriter(server, names, BACKGROUND_PATCHES_PER_SECOND);
    const started = performance.now();
    const created = await server.call('POST', SVM_PATH, { apiVersion: 'storagemigration.k8s.io/v1beta1', kind: 'StorageVersionMigration', metadata: { name: 'bench' }, spec: { resource: { group: '', resource: 'secrets' } } });
    if (created.status !== 201) throw new Error(`creating the StorageVersionMigration answered ${created.status}: ${created.text}`);
    let svm: MigrationStatus;
    for (;;) {
      const r = await server.call('GET', `${SVM_PATH}/bench`);
      svm = JSON.parse(r.text) as MigrationStatus;
      const done = svm.status.conditions?.find((c) => (c.type === 'Succeeded' || c.type === 'Failed') && c.status === 'True');
      if (done?.type === 'Failed') throw new Error(`the StorageVersionMigration failed: ${done.message}`);
      if (done) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const seconds = (performance.now() - started) / 1000;
    const bg = await writer.stop();
    const progress = JSON.parse(svm.metadata.annotations?.['atrest.dev/migration-progress'] ?? '{}') as { rewritten?: number; conflictsRetried?: number };
    const check = await atrestRewrite(backend, configPath, true);
    return {
      seconds, conflicts: 0, errors: 0, leftStale: check.stale, patched: bg.patched,
      detail: `${progress.rewritten ?? '?'} rewritten, ${progress.conflictsRetried ?? '?'} CAS conflicts retried`,
    };
  } finally {
    await server.stop();
  }
}

/**
 * Where the runs of one backend go, each on its own identical copy of the seeded secrets: kubectl
 * once; `atrest rewrite` and the StorageVersionMigration twice each, in the order rewrite, migration,
 * migration, rewrite, so that a load that changes during the run (the machine is shared) weighs on
 * both alike; the faster run of each is the figure.
 */
interface Sides {
  kubectl: Backend;
  atrest: [Backend, Backend];
  migration: [Backend, Backend];
}

function allSides(s: Sides): Backend[] {
  return [s.kubectl, ...s.atrest, ...s.migration];
}

/** One backend: kubectl, atrest rewrite and a StorageVersionMigration, each on a copy of the seeded secrets; rows named by `label`. */
async function scenario(ctx: BenchContext, label: string, sides: Sides, seedAll: (count: number) => Promise<string[]>, configPath: string, home: string, count: number): Promise<Row[]> {
  const { kubectl: kubectlSide } = sides;
  const rows: Row[] = [];
  const t0 = performance.now();
  const names = await seedAll(count);
  ctx.log(`${label}: seeded ${count} aescbc secrets ${allSides(sides).length} times in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const n = count.toLocaleString('en-US');
  let kubectl: Row | undefined;
  let kubectlConflicts: number | undefined;
  if (kubectlAvailable()) {
    ctx.log(`${label}: kubectl get | replace ...`);
    const k = await measureKubectl(kubectlSide, configPath, names, home);
    kubectlConflicts = k.conflicts;
    kubectl = { name: `${label}: kubectl get -A -o json | kubectl replace -f -, ${n} secrets`, metric: 'secrets/s', value: count / k.seconds, unit: 'secrets/s',
      note: `${k.seconds.toFixed(1)} s; ${k.detail}; ${k.conflicts} conflicts (${k.errors} errors) with ${k.patched} background patches; ${k.leftStale} left stale` };
    rows.push(kubectl);
  }
  // rewrite, migration, migration, rewrite (see Sides).
  ctx.log(`${label}: atrest rewrite ...`);
  const a1 = await measureAtrest(sides.atrest[0], configPath, names);
  ctx.log(`${label}: StorageVersionMigration ...`);
  const m1 = await measureMigration(sides.migration[0], configPath, names);
  ctx.log(`${label}: StorageVersionMigration again ...`);
  const m2 = await measureMigration(sides.migration[1], configPath, names);
  ctx.log(`${label}: atrest rewrite again ...`);
  const a2 = await measureAtrest(sides.atrest[1], configPath, names);
  const a = a1.seconds <= a2.seconds ? a1 : a2;
  const m = m1.seconds <= m2.seconds ? m1 : m2;
  const atrestRow: Row = { name: `${label}: atrest rewrite, ${n} secrets`, metric: 'secrets/s', value: count / a.seconds, unit: 'secrets/s',
    note: `faster of ${a1.seconds.toFixed(2)} s / ${a2.seconds.toFixed(2)} s (process start included); ${a.detail}; ${a.patched} background patches; ${a.leftStale} left stale` };
  rows.push(kubectl ? withRatio(atrestRow, kubectl, TARGET_RATIO) : atrestRow);
  const unresolved = Math.max(a1.conflicts + a1.leftStale, a2.conflicts + a2.leftStale);
  rows.push({ name: `${label}: atrest rewrite, conflicts left unresolved`, metric: 'conflicts', value: Math.max(a1.conflicts, a2.conflicts), unit: 'keys', target: '= 0', met: unresolved === 0 });
  if (kubectlConflicts !== undefined) rows.push({ name: `${label}: kubectl replace, failed with Conflict`, metric: 'conflicts', value: kubectlConflicts, unit: 'keys' });
  const migrationRow: Row = { name: `${label}: StorageVersionMigration, ${n} secrets`, metric: 'secrets/s', value: count / m.seconds, unit: 'secrets/s',
    note: `faster of ${m1.seconds.toFixed(2)} s / ${m2.seconds.toFixed(2)} s create → Succeeded; ${m.detail}; ${m.patched} background patches; left stale ${m1.leftStale} / ${m2.leftStale}` };
  rows.push(kubectl ? withRatio(migrationRow, kubectl, TARGET_RATIO) : migrationRow);
  rows.push(withRatio({ ...migrationRow, name: `${label}: StorageVersionMigration vs atrest rewrite` }, atrestRow, MIGRATION_VS_REWRITE));
  return rows;
}

/**
 * What bounds a rewrite on etcd, measured on the store alone: `count` compare-and-swaps of values
 * the size of a kms v2 Secret, as one transaction per key with 32 in flight (the etcd store before
 * issue #16) and as the store's updateMany does now (up to 64 per transaction, 4 in flight).
 */
async function casRates(ctx: BenchContext, endpoints: string[], count: number): Promise<Row[]> {
  const perKey = openEtcdStore({ endpoints, txnOps: 1, batchConcurrency: 32 });
  const batched = openEtcdStore({ endpoints });
  try {
    const keys = Array.from({ length: count }, (_, i) => `/cas/secrets/default/c${String(i).padStart(6, '0')}`);
    const value = (round: number) => Buffer.from(`k8s:enc:kms:v2:bench:${'x'.repeat(600)}${round}`);
    let next = 0;
    let revs = new Array<number>(count);
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < count) {
        const i = next++;
        revs[i] = await batched.create(keys[i]!, value(0));
      }
    }));
    const measure = async (store: typeof perKey, round: number): Promise<number> => {
      const started = performance.now();
      const outcomes = await store.updateMany(keys.map((key, i) => ({ key, value: value(round), expectedRevision: revs[i]! })));
      const seconds = (performance.now() - started) / 1000;
      if (!outcomes.every((o) => o.ok)) throw new Error('a compare-and-swap of the CAS measurement failed');
      revs = outcomes.map((o) => (o.ok ? o.revision : 0));
      return count / seconds;
    };
    const one = await measure(perKey, 1);
    const many = await measure(batched, 2);
    ctx.log(`etcd CAS: ${Math.round(one)}/s one txn per key, ${Math.round(many)}/s batched`);
    const base = `etcd: ${count.toLocaleString('en-US')} CAS, one txn per key (32 in flight)`;
    return [
      { name: base, metric: 'CAS/s', value: one, unit: 'keys/s' },
      { name: `etcd: ${count.toLocaleString('en-US')} CAS, updateMany (≤ 64 per txn, 4 in flight)`, metric: 'CAS/s', value: many, unit: 'keys/s', baseline: base, ratio: many / one },
    ];
  } finally {
    await perKey.close();
    await batched.close();
  }
}

export async function run(ctx: BenchContext): Promise<SuiteResult> {
  const count = ctx.size ?? (ctx.quick ? 200 : 10_000);
  const cmd = atrestCommand(!ctx.quick, ctx.log);
  const { dir, cleanup } = await makeTempDir('atrest-bench-rewrite-');
  const home = mkdtempSync(join(tmpdir(), 'atrest-bench-kubectl-home-'));
  const ctxLog = { log: silentLogger() };
  const keyFile = join(dir, 'kek.json');
  await localBackend.initKey({ keyFile }, ctxLog);
  const backend = await localBackend.open({ keyFile }, ctxLog);
  const socket = join(dir, 'kms.sock');
  const plugin = await startPluginServer({ listen: `unix://${socket}`, backend, log: silentLogger() });
  let etcd: EtcdCluster | undefined;
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    const configPath = join(dir, 'new.yaml');
    writeFileSync(configPath, newConfig(socket));
    if (!kubectlAvailable()) notes.push('kubectl: n/a (not installed), so no ratio');

    // Embedded store: one seeded data dir, copied, so both runs start from the same bytes.
    const seeded: Backend = { dataDir: join(dir, 'seeded'), prefix: '/registry' };
    const copy = (name: string): Backend => ({ dataDir: join(dir, name), prefix: '/registry' });
    const embedded: Sides = { kubectl: copy('kubectl'), atrest: [copy('atrest-1'), copy('atrest-2')], migration: [copy('migration-1'), copy('migration-2')] };
    rows.push(...await scenario(ctx, 'embedded', embedded, async (n) => {
      const names = await seed(seeded, n);
      for (const side of allSides(embedded)) cpSync(seeded.dataDir, side.dataDir, { recursive: true });
      return names;
    }, configPath, home, count));

    // etcd (full runs only): one member; the two runs use two key prefixes seeded alike.
    if (ctx.quick) {
      notes.push('etcd backend: not in quick mode');
    } else if (process.env['BENCH_REWRITE_BACKENDS'] === 'embedded') {
      notes.push('etcd backend: skipped (BENCH_REWRITE_BACKENDS=embedded)');
    } else if (!etcdAvailable()) {
      notes.push('etcd backend: n/a (etcd not installed)');
    } else {
      etcd = await startEtcdCluster(1);
      const servers = etcd.endpoints.join(',');
      const prefixed = (name: string): Backend => ({ dataDir: join(dir, `etcd-${name}`), etcdServers: servers, prefix: `/${name}` });
      const onEtcd: Sides = { kubectl: prefixed('kubectl'), atrest: [prefixed('atrest-1'), prefixed('atrest-2')], migration: [prefixed('migration-1'), prefixed('migration-2')] };
      rows.push(...await scenario(ctx, 'etcd', onEtcd, async (n) => {
        const [names] = await Promise.all(allSides(onEtcd).map((side) => seed(side, n)));
        return names as string[];
      }, configPath, home, count));
      rows.push(...await casRates(ctx, etcd.endpoints, count));
    }
    notes.push(`migration aescbc → kms v2 (local-backend plugin in the bench process); atrest serve ${{ dist: 'built', 'bench build': 'built (private build: dist/ was stale)', tsx: 'from source via tsx' }[cmd.how]}; 256-byte secrets in one namespace`);
    notes.push(`background writer: ${BACKGROUND_PATCHES_PER_SECOND} merge PATCHes/s of random secrets' labels through the API during each run; "left stale" = \`atrest rewrite --dry-run\` afterwards`);
  } finally {
    await etcd?.cleanup();
    await plugin.close();
    await backend.close();
    rmSync(home, { recursive: true, force: true });
    await cleanup();
  }
  return {
    suite: 'rewrite',
    title: `Re-encryption: atrest rewrite and a StorageVersionMigration vs kubectl get | replace of ${count.toLocaleString('en-US')} secrets on atrest serve (embedded store${ctx.quick ? '' : ', etcd'})`,
    rows,
    notes,
  };
}
