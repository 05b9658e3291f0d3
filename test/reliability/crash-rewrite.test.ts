// Issue #8 item 3, crash during rewrite: the embedded store (then a real etcd) holds 10,000 secrets written under
// aescbc; the configuration is switched to kms v2 first (a real `atrest kms-plugin`, local backend)
// and `atrest serve` (in-process startApiServer, real HTTPS) keeps taking client writes, some to the
// very secrets being rewritten. `atrest rewrite` runs as its own process and is SIGKILLed after
// random delays (seeded RNG; the seed is printed, ATREST_RELIABILITY_SEED replays it), then rerun
// until it exits 0. Asserted: `atrest verify` exits 0, every stored value is kms v2 with the write
// key and decrypts, every acknowledged client write is there with its latest value (the rewrite
// overwrote none), every untouched secret still holds its seeded value, no value lost.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { closeGeneration, loadEncryptionGeneration } from '../../src/api/encryption.js';
import { loadEncryptionConfigFile } from '../../src/config/load.js';
import { silentLogger } from '../../src/log.js';
import { newRegistry } from '../../src/metrics.js';
import { openStore } from '../../src/storage/open.js';
import { buildTransformers } from '../../src/transform/build.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { cliSource, makeTempDir, PluginProcess, repoRoot, runAtrest } from '../helpers/plugin.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { captureLog } from '../helpers/test-log.js';
import { report, sleep, WriteReadLoad, rng } from './load.js';

const VALUES = 10_000;
const WORKERS = 4;
/** Seeded secrets each client worker keeps updating while the rewrite runs. */
const UPDATED_PER_WORKER = 25;
const MAX_RUNS = 15;
const SECRETS = { group: '', resource: 'secrets' };


const nameOf = (i: number): string => `s-w${i % WORKERS}-${Math.floor(i / WORKERS)}`;
const seededValue = (name: string): string => `seeded ${name}`;

function secretJson(name: string, value: string): Buffer {
  return Buffer.from(JSON.stringify({
    kind: 'Secret', apiVersion: 'v1',
    metadata: { name, namespace: 'default', uid: crypto.randomUUID(), creationTimestamp: '2026-01-01T00:00:00Z' },
    type: 'Opaque', data: { v: Buffer.from(value).toString('base64') },
  }));
}

for (const backend of ['embedded', 'etcd'] as const) {
test(`${backend}: atrest rewrite SIGKILLed at random points over 10,000 values while clients write: nothing lost, nothing overwritten, all kms v2`, { timeout: 240_000, skip: backend === 'etcd' && !etcdAvailable() && 'needs etcd' }, async () => {
  const seed = Number(process.env['ATREST_RELIABILITY_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`crash-rewrite seed ${seed} (ATREST_RELIABILITY_SEED=${seed} replays the kill delays)`);
  const random = rng(seed);
  const { dir, cleanup } = await makeTempDir('atrest-crash-rewrite-');
  const dataDir = join(dir, 'data');
  const keyFile = join(dir, 'kek.json');
  const socket = join(dir, 'kms.sock');
  const cbcKey = Buffer.alloc(32, 7).toString('base64');
  const aescbcConfig = join(dir, 'aescbc.yaml');
  const kmsConfig = join(dir, 'kms.yaml');
  const aescbcProvider = `      - aescbc:
          keys:
            - name: cbc1
              secret: ${cbcKey}`;
  writeFileSync(aescbcConfig, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
${aescbcProvider}
`);
  writeFileSync(kmsConfig, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: rw
          endpoint: unix://${socket}
          timeout: 3s
${aescbcProvider}
`);
  let plugin: PluginProcess | undefined;
  let server: TestServer | undefined;
  let etcd: EtcdCluster | undefined;
  let load: WriteReadLoad | undefined;
  try {
    // Seed 10,000 aescbc values straight through the storage layer (no fsync per value).
    const cbc = buildTransformers((await loadEncryptionConfigFile(aescbcConfig)).config).forResource(SECRETS);
    if (backend === 'etcd') etcd = await startEtcdCluster(1);
    const location = etcd ? { etcdServers: etcd.endpoints } : { dataDir };
    const storeFlags = etcd ? ['--etcd-servers', etcd.endpoints.join(',')] : ['--data-dir', dataDir];
    const seedStore = await openStore(etcd ? location : { dataDir, sqlite: { synchronous: 'normal' } });
    try {
      // 64 at a time (etcd round trips); the embedded store serialises them anyway.
      for (let start = 0; start < VALUES; start += 64) {
        await Promise.all(Array.from({ length: Math.min(64, VALUES - start) }, async (_, j) => {
          const name = nameOf(start + j);
          const key = `/registry/secrets/default/${name}`;
          await seedStore.create(key, await cbc.toStorage(secretJson(name, seededValue(name)), Buffer.from(key)));
        }));
      }
    } finally {
      await seedStore.close();
    }

    assert.equal((await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile])).code, 0);
    plugin = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile]);
    await plugin.waitForEvent('start', 60_000);
    server = await startTestServer({ dataDir, ...(etcd ? { etcdServers: etcd.endpoints } : {}), encryptionProviderConfig: kmsConfig }, join(dir, 'server'));
    load = new WriteReadLoad({ servers: [server.server], workers: WORKERS, objectsPerWorker: UPDATED_PER_WORKER, prefix: 's', objectsExist: true, pauseMs: 5 });

    const runs: Array<{ delayMs: number | null; code: number | null; signal: string | null }> = [];
    let lastOutput = '';
    for (let run = 0; ; run++) {
      assert.ok(run < MAX_RUNS, `rewrite did not complete within ${MAX_RUNS} runs: ${JSON.stringify(runs)}\n${lastOutput}`);
      // --rate 2500 makes a full pass take 4 s, so the first runs, killed after 0.8–4.5 s (tsx
      // start-up included), die mid-way; from the 7th on a run is left to finish.
      const delayMs = run < 6 ? Math.round(800 + random() * 3700) : null;
      const child = spawn(process.execPath, ['--import', 'tsx', cliSource, 'rewrite', '--encryption-provider-config', kmsConfig, ...storeFlags,
        '--resources', 'secrets', '--batch-size', '250', '--rate', '2500', '-o', 'json'], { cwd: repoRoot, env: { ...process.env, ATREST_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
      captureLog('crash-rewrite', child.stderr);
      const exit = new Promise<{ code: number | null; signal: string | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
      const timer = delayMs === null ? undefined : setTimeout(() => child.kill('SIGKILL'), delayMs);
      const result = await exit;
      clearTimeout(timer);
      runs.push({ delayMs, ...result });
      lastOutput = out.slice(-2000);
      if (result.code === 0) break;
      assert.ok(result.signal === 'SIGKILL' || result.code === 1, `rewrite exits 0, 1 or is killed; got ${JSON.stringify(result)}:\n${lastOutput}`);
    }
    await sleep(500);
    await load.stop();
    const writes = load.events.filter((e) => e.kind === 'write');
    const { checked, lost } = await load.verify(server.server);
    await server.close();
    server = undefined;

    const verify = await runAtrest(['verify', '--encryption-provider-config', kmsConfig, ...storeFlags, '--resources', 'secrets', '-o', 'json']);

    // Raw scan: every value kms v2 under the write key, decrypts, and holds the value it should.
    const kms = await loadEncryptionGeneration(kmsConfig, { reload: false, log: silentLogger(), metrics: newRegistry() });
    const store = await openStore(etcd ? location : { dataDir, readonly: true });
    const prefix = Buffer.from('k8s:enc:kms:v2:rw:');
    let scanned = 0;
    let notKms = 0;
    let undecryptable = 0;
    let stale = 0;
    let wrongSeeded = 0;
    try {
      const t = kms.transformers.forResource(SECRETS);
      const { items } = await store.list('/registry/secrets/');
      for (const kv of items) {
        scanned++;
        if (!kv.value.subarray(0, prefix.length).equals(prefix)) notKms++;
        try {
          const r = await t.fromStorage(kv.value, Buffer.from(kv.key));
          if (r.stale) stale++;
          const name = kv.key.split('/').at(-1) as string;
          if (!load.tracks.has(name)) {
            const obj = JSON.parse(r.plaintext.toString()) as { data: { v: string } };
            if (Buffer.from(obj.data.v, 'base64').toString() !== seededValue(name)) wrongSeeded++;
          }
        } catch {
          undecryptable++;
        }
      }
    } finally {
      await store.close();
      await closeGeneration(kms);
    }

    report('3. Crash during rewrite', {
      store: backend, seed, values: VALUES, rewriteRuns: runs.length, killed: runs.filter((r) => r.signal === 'SIGKILL').length, runs,
      clientWritesAttempted: writes.length, clientWritesAcked: writes.filter((e) => e.ok).length, clientWriteErrors: writes.filter((e) => !e.ok).length,
      clientObjectsChecked: checked, clientWritesLostOrOverwritten: lost.length,
      storedValuesScanned: scanned, notKmsV2WriteKey: notKms, undecryptable, stale, seededValuesChanged: wrongSeeded, valuesLost: VALUES - scanned,
      verifyExit: verify.code,
    });
    assert.ok(runs[0]?.signal === 'SIGKILL', 'the first run was killed mid-way');
    assert.deepEqual(lost, [], 'no acknowledged client write was lost or overwritten by the rewrite');
    assert.ok(checked > 0);
    assert.equal(scanned, VALUES, 'no value lost');
    assert.equal(notKms, 0, 'every value is kms v2 with the write provider');
    assert.equal(undecryptable, 0);
    assert.equal(stale, 0, 'every value is under the current write key');
    assert.equal(wrongSeeded, 0, 'secrets no client touched keep their seeded value');
    assert.equal(verify.code, 0, `atrest verify exits 0:\n${verify.stdout.slice(-2000)}\n${verify.stderr.slice(-2000)}`);
  } finally {
    await load?.stop();
    await server?.close();
    await plugin?.stop();
    await etcd?.cleanup();
    await cleanup();
  }
});
}
