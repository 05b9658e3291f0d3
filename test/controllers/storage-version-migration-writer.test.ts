// A StorageVersionMigration of 1,500 stale Secrets while a client keeps updating Secrets through the
// API, on both stores (embedded SQLite and a real etcd): the migration succeeds, every stored value
// ends under the current write provider, and every acknowledged client write is the value the Secret
// holds at the end (the migration's compare-and-swap never overwrote one). The migration is slowed
// (--storage-version-migration-rate) so that the writer runs during all of it.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openEtcdStore } from '../../src/storage/etcd.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { Store } from '../../src/storage/types.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { condition, createMigration, keysNotUnder, progressOf, seedPlainSecrets, waitFinished } from '../helpers/migrations.js';
import { apiRequest, startTestServer, writeAesGcmConfig, type TestServer } from '../helpers/server.js';

const SECRETS = 1500;
/** The last Secrets in key order, written by the client before the migration starts (so they are current when it reaches them). */
const WRITTEN_FIRST = 100;
const VALUE_PREFIX = 'k8s:enc:aesgcm:v1:key1:';

/** A client updating Secrets (merge patches of data.v) until stopped; remembers each Secret's last acknowledged value. */
class Writer {
  readonly acknowledged = new Map<string, string>();
  writes = 0;
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private seq = 0;

  constructor(private readonly t: TestServer, private readonly names: string[]) {}

  async write(name: string): Promise<void> {
    const value = `client-${name}-${++this.seq}`;
    const r = await apiRequest(this.t.server, 'PATCH', `/api/v1/namespaces/default/secrets/${name}`, {
      body: JSON.stringify({ data: { v: Buffer.from(value).toString('base64') } }), headers: { 'Content-Type': 'application/merge-patch+json' },
    });
    if (r.status !== 200) throw new Error(`PATCH ${name} answered ${r.status}: ${r.text}`);
    // Patches of one Secret are never concurrent (one loop per name at a time), so the last acknowledged is the last applied.
    this.acknowledged.set(name, value);
    this.writes++;
  }

  start(concurrency: number): void {
    const busy = new Set<string>();
    for (let c = 0; c < concurrency; c++) {
      this.loops.push((async () => {
        while (!this.stopped) {
          const name = this.names[Math.floor(Math.random() * this.names.length)] as string;
          if (busy.has(name)) continue;
          busy.add(name);
          try {
            await this.write(name);
          } finally {
            busy.delete(name);
          }
        }
      })());
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }
}

function writerSuite(name: string, open: () => Promise<{ store: Store; etcdServers?: string[]; close(): Promise<void> }>, skip: string | false): void {
  describe(name, { skip }, () => {
    let dir: string;
    let t: TestServer;
    let store: Store;
    let backend: { close(): Promise<void> };
    let names: string[];

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'atrest-svm-writer-'));
      const opened = await open();
      backend = opened;
      store = opened.store;
      names = await seedPlainSecrets(store, SECRETS);
      const config = writeAesGcmConfig(dir);
      t = await startTestServer({
        store, encryptionProviderConfig: config.path,
        leaderElection: { leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 200 },
        storageVersionMigration: { batchSize: 100, rate: 600 },
      }, dir);
    });

    after(async () => {
      await t?.close(); // closes the store it was given
      await backend?.close();
    });

    test('no client write lost, every value current at the end', async (ctx) => {
      const writer = new Writer(t, names);
      for (const n of names.slice(-WRITTEN_FIRST)) await writer.write(n);
      writer.start(4);
      let migration;
      try {
        await createMigration(t.server, 'secrets-under-writes', 'secrets');
        migration = await waitFinished(t.server, 'secrets-under-writes', 120_000);
        const writesDuring = writer.writes - WRITTEN_FIRST;
        assert.ok(writesDuring > 0, 'the client wrote while the migration ran');
      } finally {
        await writer.stop();
      }
      assert.equal(condition(migration, 'Succeeded')?.status, 'True', JSON.stringify(migration.status));
      const progress = progressOf(migration);
      assert.ok(progress);
      assert.equal(progress.scanned, SECRETS);
      assert.equal(progress.rewritten + progress.alreadyCurrent + progress.deletedMeanwhile, SECRETS);
      assert.ok(progress.alreadyCurrent >= WRITTEN_FIRST, `the Secrets the client rewrote first were found current (${progress.alreadyCurrent})`);
      // The migration waits for its rate between listing a batch and writing it: client writes land in that window.
      assert.ok(progress.conflictsRetried > 0, 'some of the migration\'s compare-and-swaps met a client write (and were retried)');

      assert.deepEqual(await keysNotUnder(store, '/registry/secrets/', VALUE_PREFIX), [], 'every stored Secret is under the current write provider');
      const list = await apiRequest(t.server, 'GET', '/api/v1/namespaces/default/secrets');
      const values = new Map(list.json<{ items: Array<{ metadata: { name: string }; data: { v: string } }> }>().items
        .map((s) => [s.metadata.name, Buffer.from(s.data.v, 'base64').toString()]));
      const lost: string[] = [];
      names.forEach((n, i) => {
        const expected = writer.acknowledged.get(n) ?? `seed-${i}`;
        if (values.get(n) !== expected) lost.push(`${n}: ${values.get(n)} instead of ${expected}`);
      });
      assert.deepEqual(lost, [], `${writer.writes} client writes, ${progress.conflictsRetried} migration conflicts retried`);
      ctx.diagnostic(`${writer.writes} client writes; migration: ${JSON.stringify(progress)}`);
    });
  });
}

writerSuite('a migration under a concurrent client writer, embedded store', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-svm-writer-db-'));
  const store = openSqliteStore(join(dir, 'store.db'));
  return { store, close: async () => {} };
}, false);

let etcd: EtcdCluster | undefined;
writerSuite('a migration under a concurrent client writer, etcd', async () => {
  etcd = await startEtcdCluster(1);
  const store = openEtcdStore({ endpoints: etcd.endpoints });
  return { store, close: async () => { await etcd?.cleanup(); } };
}, !etcdAvailable() && 'etcd is not installed');
