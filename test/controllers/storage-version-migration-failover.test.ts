// A StorageVersionMigration survives the server that runs it (built CLI processes on a real etcd):
// - the only `atrest serve`, SIGKILLed mid-way and started again, resumes after the last batch it
//   recorded — it does not start over: each object is scanned once, except what was in flight at
//   the kill (at most two batches, found current the second time);
// - of two replicas, the one holding the Lease is SIGKILLed mid-way; the other takes the Lease over
//   (after the lease duration) and finishes the migration from the recorded progress.
// The migrations are slowed (--storage-version-migration-rate) so the kill lands mid-way.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openEtcdStore } from '../../src/storage/etcd.js';
import type { Store } from '../../src/storage/types.js';
import { etcdAvailable, freePort, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import {
  condition, createMigration, getMigration, keysNotUnder, progressOf, seedPlainSecrets, waitFinished, type ApiClient, type MigrationObject,
} from '../helpers/migrations.js';
import { waitFor } from '../helpers/plugin.js';
import { REPLICA_KMS_NAME, startReplicas, waitReady, type Replica, type ReplicaSet } from '../helpers/replicas.js';
import { apiRequest, serveClient, writeAesGcmConfig } from '../helpers/server.js';
import { ServeProcess } from '../helpers/task-page.js';

const BATCH = 100;
const LEADER_ELECTION = ['--leader-elect-lease-duration', '2s', '--leader-elect-renew-deadline', '1500ms', '--leader-elect-retry-period', '200ms'];
const MIGRATION = ['--storage-version-migration-batch-size', String(BATCH), '--storage-version-migration-rate', '300'];

/** The migration's progress read through `client` once it has scanned at least `atLeast` objects. */
async function progressReaches(client: ApiClient, name: string, atLeast: number): Promise<number> {
  return waitFor(`migration ${name} past ${atLeast} objects`, async () => {
    const scanned = progressOf(await getMigration(client, name))?.scanned ?? 0;
    return scanned >= atLeast ? scanned : undefined;
  }, 60_000, 50);
}

/**
 * A migration that resumed rather than started over: each object scanned once, but for what was in
 * flight at the kill: the batch being written, and the one before if its progress write was not done.
 */
function assertResumed(done: MigrationObject, total: number, scannedBeforeKill: number, diagnostic: (m: string) => void): void {
  assert.equal(condition(done, 'Succeeded')?.status, 'True', JSON.stringify(done.status));
  const p = progressOf(done);
  assert.ok(p, 'progress recorded');
  assert.equal(p.rewritten + p.alreadyCurrent, total, JSON.stringify(p));
  assert.ok(p.scanned >= total && p.scanned <= total + 2 * BATCH, `scanned ${p.scanned}: every object once, plus at most the batches in flight at the kill`);
  assert.ok(p.alreadyCurrent <= 2 * BATCH, `only what was in flight at the kill was seen twice (${p.alreadyCurrent} found current, ${scannedBeforeKill} scanned before the kill)`);
  diagnostic(`${scannedBeforeKill} scanned before the kill; at the end: ${JSON.stringify(p)}`);
}

describe('a StorageVersionMigration outlives the server running it', { skip: !etcdAvailable() && 'etcd is not installed', timeout: 240_000 }, () => {
  let dir: string;
  let etcd: EtcdCluster;
  let store: Store;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'atrest-svm-failover-'));
    etcd = await startEtcdCluster(1);
    store = openEtcdStore({ endpoints: etcd.endpoints });
  });

  after(async () => {
    await store?.close();
    await etcd?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  test('SIGKILL mid-way, restart: it resumes after the last recorded batch', async (ctx) => {
    const total = 2000;
    await seedPlainSecrets(store, total, { etcdPrefix: '/restart' });
    const config = writeAesGcmConfig(dir, 'key1', 'restart.yaml');
    const port = await freePort();
    const args = ['--etcd-servers', etcd.endpoints.join(','), '--etcd-prefix', '/restart', '--data-dir', join(dir, 'restart-data'),
      '--secure-port', String(port), '--encryption-provider-config', config.path, ...LEADER_ELECTION, ...MIGRATION];
    let serve = await ServeProcess.start(args);
    const client: ApiClient = serveClient(`https://127.0.0.1:${port}`, join(dir, 'restart-data'));
    try {
      await createMigration(client, 'restart', 'secrets');
      const before = await progressReaches(client, 'restart', 600);
      await serve.kill();
      const recorded = progressOf(JSON.parse(Buffer.from((await store.get('/restart/storageversionmigrations/restart'))?.value ?? []).toString()) as MigrationObject);
      assert.ok(recorded?.continue, 'the killed server had recorded where it was');
      assert.ok(recorded.scanned < total, 'killed before the end');
      serve = await ServeProcess.start(args);
      const done = await waitFinished(client, 'restart', 120_000);
      assertResumed(done, total, before, (m) => ctx.diagnostic(m));
      assert.match(serve.log(), /storage version migration resumed/);
      assert.doesNotMatch(serve.log(), /storage version migration started/);
      assert.deepEqual(await keysNotUnder(store, '/restart/secrets/', 'k8s:enc:aesgcm:v1:key1:'), []);
    } finally {
      await serve.stop();
    }
  });

  test('the replica holding the Lease dies mid-way: the other takes over and finishes it', async (ctx) => {
    const total = 2000;
    await seedPlainSecrets(store, total, { etcdPrefix: '/takeover' });
    let set: ReplicaSet | undefined;
    try {
      mkdirSync(join(dir, 'replicas'), { mode: 0o700 });
      set = await startReplicas(etcd, join(dir, 'replicas'), { count: 2, serveArgs: ['--etcd-prefix', '/takeover', ...LEADER_ELECTION, ...MIGRATION] });
      const [a, b] = set.replicas as [Replica, Replica];
      await Promise.all([waitReady(a), waitReady(b)]);
      const leads = async (r: Replica): Promise<boolean> =>
        /leader_election_master_status\{name="atrest-storage-version-migrator"\} 1/.test((await apiRequest(r.api, 'GET', '/metrics')).text);
      const holder = await waitFor('a replica holds the Lease', async () => ((await leads(a)) ? a : (await leads(b)) ? b : undefined));
      const survivor = holder === a ? b : a;
      assert.equal(await leads(survivor), false, 'only one replica leads');
      await createMigration(survivor.client, 'takeover', 'secrets');
      const before = await progressReaches(survivor.client, 'takeover', 500);
      const lease = async () => JSON.parse(Buffer.from((await store.get('/takeover/leases/kube-system/atrest-storage-version-migrator'))?.value ?? []).toString()) as { spec: { holderIdentity: string; leaseTransitions: number } };
      const first = (await lease()).spec;
      await holder.kill();
      const done = await waitFinished(survivor.client, 'takeover', 120_000);
      assertResumed(done, total, before, (m) => ctx.diagnostic(m));
      assert.equal(await leads(survivor), true, 'the survivor holds the Lease now');
      const now = (await lease()).spec;
      assert.notEqual(now.holderIdentity, first.holderIdentity);
      assert.equal(now.leaseTransitions, first.leaseTransitions + 1);
      assert.match(survivor.log(), /storage version migration resumed/);
      assert.deepEqual(await keysNotUnder(store, '/takeover/secrets/', `k8s:enc:kms:v2:${REPLICA_KMS_NAME}:`), []);
    } finally {
      await set?.stop();
    }
  });
});
