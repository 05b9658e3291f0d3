// Issue #14, replica loss: three `atrest serve` processes (built CLI) on a 3-member etcd cluster,
// each with its own `atrest kms-plugin` (one shared KEK file) and kms v2 DEK seed, one shared
// --data-dir.
//  1. A load of creates and updates spread over the three; replica C is SIGKILLed twice and
//     restarted; a watcher on B (which survives) runs throughout. Counted (asserted 0): acknowledged
//     writes lost, values stored in plaintext, watch events missed (or duplicated) by B's watcher.
//  2. C's plugin is stopped: C fails closed while A and B go on serving. /readyz fails (500, kube's
//     code) naming the kms check; kms v2: C still writes with its cached DEK seed (kube's 3 minutes),
//     but reading a value under a seed it has not decrypted yet is a 500 (kube's text, naming the
//     key); kms v1: every write through C is a 500 naming the provider, and nothing is stored.
//  3. `atrest rewrite` (aescbc → kms v2) while the three replicas take writes: 0 client writes
//     overwritten, every value current after it.
// Each prints one RELIABILITY {json} line (RELIABILITY.md §8).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadEncryptionConfigFile } from '../../src/config/load.js';
import { openStore } from '../../src/storage/open.js';
import { buildTransformers } from '../../src/transform/build.js';
import { runCli } from '../helpers/cli.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { makeTempDir, waitFor } from '../helpers/plugin.js';
import { etcdHistory, REPLICA_KMS_NAME, ResumingWatch, startReplicas, waitReady, type Replica, type ReplicaSet } from '../helpers/replicas.js';
import { apiRequest } from '../helpers/server.js';
import { etcdctlValues } from '../helpers/task-page.js';
import { registerTestSecret } from '../helpers/test-log.js';
import { report, secretBody, seed, sleep, valueOf, WriteReadLoad } from './load.js';

const skip = (!etcdAvailable() && 'needs etcd') || (!existsSync(join(process.cwd(), 'dist')) && process.env['CI'] !== 'true' && 'needs npm run build');
const SECRETS = '/api/v1/namespaces/default/secrets';

/** Runs `fn` with a 3-member etcd and three replicas; stops everything afterwards. */
async function withReplicas(label: string, options: Parameters<typeof startReplicas>[2], fn: (set: ReplicaSet, etcd: EtcdCluster, dir: string) => Promise<void>): Promise<void> {
  const tmp = await makeTempDir(`atrest-${label}-`);
  let etcd: EtcdCluster | undefined;
  let set: ReplicaSet | undefined;
  try {
    etcd = await startEtcdCluster(3);
    set = await startReplicas(etcd, tmp.dir, options);
    await fn(set, etcd, tmp.dir);
  } finally {
    await set?.stop();
    await etcd?.cleanup();
    await tmp.cleanup();
  }
}

/** Raw scan of everything under /registry/secrets/: values not stored with the kms provider, values holding plaintext. */
async function scanAtRest(etcd: EtcdCluster, kmsVersion: 'v1' | 'v2', markers: string[]): Promise<{ values: number; notKms: number; plaintext: number }> {
  const prefix = Buffer.from(`k8s:enc:kms:${kmsVersion}:${REPLICA_KMS_NAME}:`);
  const raw = await etcdctlValues(etcd.endpoints[0] as string, '/registry/secrets/');
  let notKms = 0;
  let plaintext = 0;
  for (const value of raw.values()) {
    if (!value.subarray(0, prefix.length).equals(prefix)) notKms++;
    if (value.includes('"kind":"Secret"') || markers.some((m) => value.includes(m))) plaintext++;
  }
  return { values: raw.size, notKms, plaintext };
}

const rvOf = (r: { json<T>(): T }): number => Number(r.json<{ metadata: { resourceVersion: string } }>().metadata.resourceVersion);

test('replica loss: one of three replicas SIGKILLed twice under load: 0 acknowledged writes lost, 0 plaintext, 0 watch events missed on a survivor', { skip, timeout: 180_000 }, () => withReplicas('replica-loss', {}, async (set, etcd) => {
  const [a, b, c] = set.replicas as [Replica, Replica, Replica];
  const readTargets = await seed(a.api, 'seed', 10);
  const startRv = rvOf(await apiRequest(b.api, 'GET', SECRETS));
  const watch = new ResumingWatch(() => b.client, SECRETS, startRv);
  const load = new WriteReadLoad({ servers: [a.api, b.api, c.api], workers: 6, objectsPerWorker: 8, readTargets, prefix: 'rl', pauseMs: 5 });
  const kills: Array<{ downMs: number; restartMs: number }> = [];
  try {
    await sleep(2000);
    for (let k = 0; k < 2; k++) {
      const killedAt = Date.now();
      await c.kill();
      await sleep(2000);
      const restartAt = Date.now();
      await c.start();
      await waitReady(c);
      kills.push({ downMs: restartAt - killedAt, restartMs: Date.now() - restartAt });
      await sleep(2000);
    }
  } finally {
    await load.stop();
  }
  const writes = load.events.filter((e) => e.kind === 'write');
  const reads = load.events.filter((e) => e.kind === 'read');
  const fence = await apiRequest(a.api, 'POST', SECRETS, { body: secretBody('fence', 'fence') });
  assert.equal(fence.status, 201, fence.text);
  const fenceRv = rvOf(fence);
  await waitFor('the watcher on B to reach the fence', () => watch.lastRv >= fenceRv, 30_000);
  await watch.stop();

  const truth = await etcdHistory(etcd.endpoints, '/registry/secrets/default/', startRv, fenceRv);
  const seen = watch.events.filter((e) => e.rv <= fenceRv);
  const seenRevs = new Set(seen.map((e) => e.rv));
  const truthKey = new Set(truth.map((e) => `${e.rv} ${e.type} ${e.name}`));
  const missed = truth.filter((e) => !seen.some((s) => s.rv === e.rv && s.type === e.type && s.name === e.name)).length;
  const duplicates = seen.length - seenRevs.size;
  const outOfOrder = seen.filter((e, i) => i > 0 && e.rv <= (seen[i - 1] as { rv: number }).rv).length;
  const unexpected = seen.filter((e) => !truthKey.has(`${e.rv} ${e.type} ${e.name}`)).length;

  const lost: string[] = [];
  let checked = 0;
  for (const r of set.replicas) {
    const v = await load.verify(r.api);
    checked += v.checked;
    lost.push(...v.lost.map((l) => `via ${r.name}: ${l}`));
  }
  const atRest = await scanAtRest(etcd, 'v2', ['seeded seed-', 'rl-w']);
  const errors = writes.filter((e) => !e.ok);
  // Requests that failed, by the replica they went to (the load does not fail over; a load balancer would).
  const failedVia = (r: Replica): number => load.events.filter((e) => !e.ok && e.server === r.client.url).length;
  report('8. Replica loss', {
    etcdMembers: 3, replicas: 3, killedReplica: c.name, kills: kills.length, downMs: kills.map((k) => k.downMs), restartMs: kills.map((k) => k.restartMs),
    writesAttempted: writes.length, writesAcked: writes.length - errors.length, writeErrors: errors.length,
    writeErrorStatuses: [...new Set(errors.map((e) => e.status))], readsTotal: reads.length, readErrors: reads.filter((e) => !e.ok).length,
    failedRequestsByReplica: { a: failedVia(a), b: failedVia(b), c: failedVia(c) },
    ackedObjectsChecked: checked, ackedWritesLost: lost.length,
    valuesAtRest: atRest.values, storedNotKms: atRest.notKms, storedPlaintext: atRest.plaintext,
    etcdEvents: truth.length, watchEventsSeen: seen.length, watchEventsMissed: missed, watchDuplicates: duplicates, watchOutOfOrder: outOfOrder, watchUnexpected: unexpected, watchReconnects: watch.reconnects,
  });
  assert.equal(kills.length, 2);
  assert.ok(writes.some((e) => e.ok), 'writes were acknowledged');
  assert.ok(checked > 0);
  assert.deepEqual(lost, [], 'no acknowledged write lost, read through every replica');
  assert.equal(failedVia(a) + failedVia(b), 0, 'the surviving replicas failed no request');
  assert.equal(atRest.notKms, 0, 'every value is stored with kms v2');
  assert.equal(atRest.plaintext, 0, 'no value in plaintext');
  assert.ok(truth.length > 10);
  assert.equal(missed, 0, 'the watcher on B missed no event');
  assert.equal(duplicates, 0);
  assert.equal(outOfOrder, 0);
  assert.equal(unexpected, 0);
  assert.equal(watch.error, undefined);
}));

/** Polls the replica's /readyz until it fails (500, as kube answers); returns the verbose text. */
async function waitNotReady(r: Replica): Promise<string> {
  return waitFor(`replica ${r.name}'s /readyz to fail`, async () => {
    const res = await apiRequest(r.api, 'GET', '/readyz?verbose', { token: null });
    // kube-apiserver answers a failed check with 500 (healthz.go), and so does atrest.
    return res.status === 500 ? res.text : undefined;
  }, 60_000, 250);
}

test('replica loss: one replica\'s KMS plugin stopped (kms v2): that replica fails closed, the others go on serving', { skip, timeout: 180_000 }, () => withReplicas('replica-plugin-v2', {}, async (set, etcd) => {
  const [a, b, c] = set.replicas as [Replica, Replica, Replica];
  registerTestSecret('before the stop');
  for (const r of set.replicas) assert.equal((await apiRequest(r.api, 'POST', SECRETS, { body: secretBody(`pre-${r.name}`, 'before the stop') })).status, 201);
  // C has read A's and B's values once, so their DEK seeds are in its cache.
  for (const name of ['pre-a', 'pre-b']) assert.equal(valueOf(await apiRequest(c.api, 'GET', `${SECRETS}/${name}`)), 'before the stop');

  await c.stopPlugin();
  const readyz = await waitNotReady(c);
  assert.match(readyz, /\[-\]kms-provider(s|-0) failed: reason withheld/, readyz);
  assert.equal((await apiRequest(c.api, 'GET', '/livez', { token: null })).status, 200, 'C is not restarted for a KMS outage (/livez has no KMS check)');
  for (const r of [a, b]) assert.equal((await apiRequest(r.api, 'GET', '/readyz', { token: null })).status, 200, `${r.name} stays ready`);

  // kms v2: C keeps encrypting with its cached DEK seed (kube allows this for 3 minutes after the
  // last good Status) and decrypting values under seeds it already knows.
  registerTestSecret('during the stop');
  const cWrite = await apiRequest(c.api, 'POST', SECRETS, { body: secretBody('during-c', 'during the stop') });
  assert.equal(cWrite.status, 201, cWrite.text);
  assert.equal(valueOf(await apiRequest(c.api, 'GET', `${SECRETS}/pre-a`)), 'before the stop');

  // A restarts: a new DEK seed that C has never seen. Reading A's new value needs C's plugin: a 500
  // naming the key, the provider and its plugin endpoint, "plugin unreachable" (C's plugin is stopped),
  // then kube's kms v2 text (`failed to decrypt DEK, error: <the gRPC error>`).
  await a.kill();
  await a.start();
  await waitReady(a);
  const aWrite = await apiRequest(a.api, 'POST', SECRETS, { body: secretBody('after-a-restart', 'during the stop') });
  assert.equal(aWrite.status, 201, aWrite.text);
  const cRead = await apiRequest(c.api, 'GET', `${SECRETS}/after-a-restart`);
  assert.ok(cRead.status >= 500, `C cannot decrypt without its plugin: ${cRead.status} ${cRead.text}`);
  assert.equal(cRead.status, 500);
  assert.match(cRead.json<{ message: string }>().message, /^Internal error occurred: failed to decrypt the stored value of \/registry\/secrets\/default\/after-a-restart: kms v2 provider "replicas" \(plugin unix:\/\/[^)]+\): plugin unreachable: failed to decrypt DEK, error: rpc error: code = (DeadlineExceeded|Unavailable)/);
  assert.doesNotMatch(cRead.text, /during the stop|ZHVyaW5nIHRoZSBzdG9w/, 'no plaintext in the error');

  // A and B serve everything meanwhile, including what C wrote with its cached seed.
  let othersOk = 0;
  for (let i = 0; i < 10; i++) {
    const r = [a, b][i % 2] as Replica;
    const w = await apiRequest(r.api, 'POST', SECRETS, { body: secretBody(`others-${i}`, 'during the stop') });
    const g = await apiRequest(r.api, 'GET', `${SECRETS}/during-c`);
    const g2 = await apiRequest(r.api, 'GET', `${SECRETS}/after-a-restart`);
    if (w.status === 201 && valueOf(g) === 'during the stop' && valueOf(g2) === 'during the stop') othersOk++;
  }
  assert.equal(othersOk, 10, 'A and B go on writing and reading');

  // The plugin comes back: C is ready again and reads the value it could not.
  await c.startPlugin();
  await waitReady(c, 60_000);
  assert.equal(valueOf(await apiRequest(c.api, 'GET', `${SECRETS}/after-a-restart`)), 'during the stop');
  const atRest = await scanAtRest(etcd, 'v2', ['before the stop', 'during the stop']);
  report('8. Replica loss: plugin stopped (kms v2)', {
    replicas: 3, pluginStopped: c.name, readyzWhileDown: 500, livezWhileDown: 200, othersReadyz: 200,
    writeThroughStoppedReplica: cWrite.status, readOfUnknownSeedThroughStoppedReplica: cRead.status,
    othersRequestsOk: othersOk * 3, othersRequests: 30, readyAgainAfterPluginBack: true,
    valuesAtRest: atRest.values, storedNotKms: atRest.notKms, storedPlaintext: atRest.plaintext,
    errorSample: cRead.text.slice(0, 300),
  });
  assert.equal(atRest.notKms, 0);
  assert.equal(atRest.plaintext, 0);
}));

test('replica loss: one replica\'s KMS plugin stopped (kms v1): its writes fail closed naming the provider, nothing is stored, the others go on', { skip, timeout: 180_000 }, () => withReplicas('replica-plugin-v1', { kmsApiVersion: 'v1' }, async (set, etcd) => {
  const [a, b, c] = set.replicas as [Replica, Replica, Replica];
  await c.stopPlugin();
  const readyz = await waitNotReady(c);
  assert.match(readyz, /\[-\]kms-provider(s|-0) failed: reason withheld/, readyz);
  registerTestSecret('v1 during the stop');
  const statuses: number[] = [];
  let sample = '';
  for (let i = 0; i < 5; i++) {
    const w = await apiRequest(c.api, 'POST', SECRETS, { body: secretBody(`v1-c-${i}`, 'v1 during the stop') });
    statuses.push(w.status);
    sample ||= w.text;
    assert.ok(w.status >= 500, `a kms v1 write without the plugin fails: ${w.status} ${w.text}`);
    assert.match(w.text, new RegExp(REPLICA_KMS_NAME), 'the error names the provider');
  }
  let othersOk = 0;
  for (let i = 0; i < 10; i++) {
    const r = [a, b][i % 2] as Replica;
    const w = await apiRequest(r.api, 'POST', SECRETS, { body: secretBody(`v1-others-${i}`, 'v1 during the stop') });
    if (w.status === 201 && valueOf(await apiRequest(r.api, 'GET', `${SECRETS}/v1-others-${i}`)) === 'v1 during the stop') othersOk++;
  }
  assert.equal(othersOk, 10);
  const raw = await etcdctlValues(etcd.endpoints[0] as string, '/registry/secrets/default/v1-c-');
  const atRest = await scanAtRest(etcd, 'v1', ['v1 during the stop']);
  report('8. Replica loss: plugin stopped (kms v1)', {
    replicas: 3, pluginStopped: c.name, readyzWhileDown: 500, writesThroughStoppedReplica: statuses, storedByStoppedReplica: raw.size,
    othersRequestsOk: othersOk * 2, othersRequests: 20, valuesAtRest: atRest.values, storedNotKms: atRest.notKms, storedPlaintext: atRest.plaintext,
    errorSample: sample.slice(0, 300),
  });
  assert.equal(raw.size, 0, 'the failed writes stored nothing');
  assert.equal(atRest.notKms, 0);
  assert.equal(atRest.plaintext, 0);
}));

const WORKERS = 3;
const VALUES = 1500;
const nameOf = (i: number): string => `s-w${i % WORKERS}-${Math.floor(i / WORKERS)}`;

test('replica loss: atrest rewrite while the three replicas take writes: 0 client writes overwritten, all current after', { skip, timeout: 240_000 }, async () => {
  const cbcKey = Buffer.alloc(32, 9).toString('base64');
  registerTestSecret(Buffer.from(cbcKey, 'base64'), 'aescbc-key');
  const aescbc = `      - aescbc:\n          keys:\n            - name: cbc1\n              secret: ${cbcKey}\n`;
  await withReplicas('replica-rewrite', { readProviders: aescbc }, async (set, etcd, dir) => {
    const [a, b, c] = set.replicas as [Replica, Replica, Replica];
    // Seed aescbc values straight into etcd (what an older configuration wrote).
    const { writeFileSync } = await import('node:fs');
    const cbcConfig = join(dir, 'aescbc.yaml');
    writeFileSync(cbcConfig, `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n${aescbc}`);
    const cbc = buildTransformers((await loadEncryptionConfigFile(cbcConfig)).config).forResource({ group: '', resource: 'secrets' });
    const store = await openStore({ etcdServers: etcd.endpoints });
    try {
      for (let start = 0; start < VALUES; start += 64) {
        await Promise.all(Array.from({ length: Math.min(64, VALUES - start) }, async (_, j) => {
          const name = nameOf(start + j);
          const key = `/registry/secrets/default/${name}`;
          const obj = { kind: 'Secret', apiVersion: 'v1', metadata: { name, namespace: 'default', uid: crypto.randomUUID(), creationTimestamp: '2026-01-01T00:00:00Z' }, type: 'Opaque', data: { v: Buffer.from(`seeded ${name}`).toString('base64') } };
          await store.create(key, await cbc.toStorage(Buffer.from(JSON.stringify(obj)), Buffer.from(key)));
        }));
      }
    } finally {
      await store.close();
    }
    // Clients keep updating 300 of the seeded secrets through all three replicas while rewrite runs
    // (paced so that their first pass over still-stale values overlaps the rewrite's pass).
    const load = new WriteReadLoad({ servers: [a.api, b.api, c.api], workers: WORKERS, objectsPerWorker: 100, prefix: 's', objectsExist: true, pauseMs: 10 });
    let rewrite;
    try {
      rewrite = await runCli(['rewrite', '--encryption-provider-config', a.configPath, '--etcd-servers', etcd.endpoints.join(','), '--resources', 'secrets', '--batch-size', '100', '--rate', '300', '-o', 'json'], { env: { ATREST_LOG_LEVEL: 'warn' } });
      await sleep(500);
    } finally {
      await load.stop();
    }
    assert.equal(rewrite.code, 0, `rewrite exits 0: ${rewrite.stdout}\n${rewrite.stderr.slice(-2000)}`);
    const summary = JSON.parse(rewrite.stdout) as Record<string, unknown>;
    const writes = load.events.filter((e) => e.kind === 'write');
    const lost: string[] = [];
    let checked = 0;
    for (const r of set.replicas) {
      const v = await load.verify(r.api);
      checked += v.checked;
      lost.push(...v.lost);
    }
    // Secrets no client touched keep their seeded value (read through B).
    let seededWrong = 0;
    for (let i = 0; i < VALUES; i += 7) {
      const name = nameOf(i);
      if (load.tracks.has(name)) continue;
      if (valueOf(await apiRequest(b.api, 'GET', `${SECRETS}/${name}`)) !== `seeded ${name}`) seededWrong++;
    }
    const verify = await runCli(['verify', '--encryption-provider-config', a.configPath, '--etcd-servers', etcd.endpoints.join(','), '--resources', 'secrets', '-o', 'json']);
    const atRest = await scanAtRest(etcd, 'v2', ['seeded s-w']);
    report('8. Replica loss: rewrite under three replicas', {
      replicas: 3, values: VALUES, rewrite: summary,
      clientWritesAttempted: writes.length, clientWritesAcked: writes.filter((e) => e.ok).length, clientWriteErrors: writes.filter((e) => !e.ok).length,
      clientObjectsChecked: checked, clientWritesOverwrittenOrLost: lost.length, seededValuesChanged: seededWrong,
      valuesAtRest: atRest.values, storedNotKmsV2: atRest.notKms, storedPlaintext: atRest.plaintext, verifyExit: verify.code,
      ...(writes.some((e) => !e.ok) ? { clientErrorSample: writes.find((e) => !e.ok)?.message?.slice(0, 300) } : {}),
    });
    assert.ok(checked > 0);
    assert.deepEqual(lost, [], 'rewrite overwrote no client write');
    assert.equal(seededWrong, 0);
    assert.equal(atRest.values, VALUES, 'no value lost');
    assert.equal(atRest.notKms, 0, 'every value is kms v2 after the rewrite');
    assert.equal(atRest.plaintext, 0);
    assert.equal(verify.code, 0, `atrest verify exits 0: ${verify.stdout.slice(-1500)}`);
  });
});
