// The etcd store's batched writes on a real etcd: updateMany puts many compare-and-swaps in one
// transaction and, when one compare fails, settles that key and goes again with the rest; a client
// write racing the batch is never overwritten. (createGuarded is in the shared conformance suite.)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openEtcdStore } from '../../src/storage/etcd.js';
import { StoreError } from '../../src/storage/errors.js';
import type { UpdateOp, UpdateOutcome } from '../../src/storage/types.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';

let prefixSeq = 0;
const uniquePrefix = () => `/batch-${process.pid}-${prefixSeq++}/`;

async function seed(store: ReturnType<typeof openEtcdStore>, prefix: string, n: number): Promise<number[]> {
  const revs: number[] = [];
  for (let i = 0; i < n; i += 50) {
    revs.push(...(await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => store.create(`${prefix}${String(i + j).padStart(4, '0')}`, Buffer.from(`old-${i + j}`))))));
  }
  return revs;
}

const keyOf = (prefix: string, i: number) => `${prefix}${String(i).padStart(4, '0')}`;

describe('etcd store: batched compare-and-swap (updateMany)', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  let etcd: EtcdCluster;
  let store: ReturnType<typeof openEtcdStore>;

  before(async () => {
    etcd = await startEtcdCluster(1);
    // Small transactions so that 300 ops make many of them, several in flight.
    store = openEtcdStore({ endpoints: etcd.endpoints, txnOps: 16, batchConcurrency: 4 });
  });

  after(async () => {
    await store?.close();
    await etcd?.cleanup();
  });

  it('puts several compare-and-swaps in one transaction: one revision per batch, fewer revisions than keys', async () => {
    const p = uniquePrefix();
    const revs = await seed(store, p, 64);
    const before = await store.revision();
    const outcomes = await store.updateMany(revs.map((rev, i) => ({ key: keyOf(p, i), value: Buffer.from(`new-${i}`), expectedRevision: rev })));
    assert.ok(outcomes.every((o) => o.ok));
    const revisions = new Set(outcomes.map((o) => (o.ok ? o.revision : 0)));
    assert.equal(revisions.size, 4, '64 ops in transactions of 16: 4 revisions');
    assert.equal(await store.revision(), before + 4);
    for (let i = 0; i < 64; i++) assert.deepEqual((await store.get(keyOf(p, i)))?.value, Buffer.from(`new-${i}`));
  });

  it('a key changed before the batch fails alone (CONFLICT with its current value); the rest of its transaction is applied', async () => {
    const p = uniquePrefix();
    const revs = await seed(store, p, 48);
    // Keys in the middle of the second transaction, and one deleted.
    const changed = [18, 19, 25];
    const changedRevs = new Map<number, number>();
    for (const i of changed) changedRevs.set(i, await store.update(keyOf(p, i), Buffer.from(`client-${i}`), revs[i]!));
    await store.delete(keyOf(p, 30));
    const outcomes = await store.updateMany(revs.map((rev, i) => ({ key: keyOf(p, i), value: Buffer.from(`new-${i}`), expectedRevision: rev })));
    for (let i = 0; i < 48; i++) {
      const o = outcomes[i]!;
      const stored = await store.get(keyOf(p, i));
      if (changed.includes(i)) {
        assert.ok(!o.ok && o.error instanceof StoreError && o.error.code === 'CONFLICT', `key ${i}: CONFLICT`);
        assert.equal(o.error.current?.modRevision, changedRevs.get(i));
        assert.deepEqual(stored?.value, Buffer.from(`client-${i}`), `key ${i}: the client's write stays`);
      } else if (i === 30) {
        assert.ok(!o.ok && o.error instanceof StoreError && o.error.code === 'NOT_FOUND', 'the deleted key: NOT_FOUND');
        assert.equal(stored, undefined, 'the deleted key is not recreated');
      } else {
        assert.ok(o.ok, `key ${i}: applied`);
        assert.deepEqual(stored?.value, Buffer.from(`new-${i}`));
      }
    }
  });

  it('client writes racing the batches are never overwritten', async () => {
    const p = uniquePrefix();
    const n = 300;
    const revs = await seed(store, p, n);
    // A client doing compare-and-swap writes on random keys of the batch while it runs.
    const clientWrites: Array<{ i: number; revision: number }> = [];
    let running = true;
    const client = (async () => {
      let seq = 0;
      while (running) {
        const i = Math.floor(Math.random() * n);
        const cur = await store.get(keyOf(p, i));
        try {
          clientWrites.push({ i, revision: await store.update(keyOf(p, i), Buffer.from(`client-${seq++}`), cur!.modRevision) });
        } catch (err) {
          if (!(err instanceof StoreError && err.code === 'CONFLICT')) throw err;
        }
      }
    })();
    let outcomes: UpdateOutcome[];
    let writtenBefore = 0;
    try {
      // Let the client land some writes first, so that some batches certainly meet them.
      while (clientWrites.length < 5) await new Promise((r) => setTimeout(r, 5));
      writtenBefore = new Set(clientWrites.map((w) => w.i)).size;
      const ops: UpdateOp[] = revs.map((rev, i) => ({ key: keyOf(p, i), value: Buffer.from(`new-${i}`), expectedRevision: rev }));
      outcomes = await store.updateMany(ops);
    } finally {
      running = false;
      await client;
    }
    let conflicts = 0;
    for (let i = 0; i < n; i++) {
      const o = outcomes[i]!;
      const mine = clientWrites.filter((w) => w.i === i);
      if (o.ok) {
        // Applied at o.revision over revs[i]: no client write may have landed in between.
        assert.ok(!mine.some((w) => w.revision > revs[i]! && w.revision < o.revision), `key ${i}: a client write between ${revs[i]} and ${o.revision} was overwritten`);
      } else {
        conflicts++;
        assert.ok(o.error instanceof StoreError && o.error.code === 'CONFLICT', `key ${i}: ${String(o.error)}`);
        assert.ok(mine.some((w) => w.revision > revs[i]!), `key ${i}: a conflict without a client write`);
      }
      // The stored value is the last write: the client's when it wrote after the batch, else ours.
      const stored = await store.get(keyOf(p, i));
      const lastClient = mine.reduce((m, w) => Math.max(m, w.revision), 0);
      if (o.ok && o.revision > lastClient) assert.deepEqual(stored?.value, Buffer.from(`new-${i}`), `key ${i}`);
      else assert.ok(stored?.value.toString().startsWith('client-'), `key ${i}: the client's write is what is stored`);
    }
    assert.ok(conflicts >= writtenBefore && writtenBefore > 0, `the keys written before the batch conflicted (${conflicts} conflicts, ${writtenBefore} keys)`);
  });

  it('an etcd with a lower --max-txn-ops gets one transaction per key instead, with the same outcomes', async () => {
    const small = await startEtcdCluster(1, { extraArgs: ['--max-txn-ops=4'] });
    const s = openEtcdStore({ endpoints: small.endpoints, txnOps: 16 });
    try {
      const p = uniquePrefix();
      const revs = await seed(s, p, 20);
      await s.update(keyOf(p, 7), Buffer.from('client'), revs[7]!);
      const outcomes = await s.updateMany(revs.map((rev, i) => ({ key: keyOf(p, i), value: Buffer.from(`new-${i}`), expectedRevision: rev })));
      assert.equal(outcomes.filter((o) => o.ok).length, 19);
      const o7 = outcomes[7]!;
      assert.ok(!o7.ok && o7.error instanceof StoreError && o7.error.code === 'CONFLICT');
      assert.deepEqual((await s.get(keyOf(p, 7)))?.value, Buffer.from('client'));
      assert.deepEqual((await s.get(keyOf(p, 8)))?.value, Buffer.from('new-8'));
    } finally {
      await s.close();
      await small.cleanup();
    }
  });

  it('the per-key fallback (a server refusing the transactions, ops without a revision) keeps to batchConcurrency', async () => {
    const small = await startEtcdCluster(1, { extraArgs: ['--max-txn-ops=4'] });
    const s = openEtcdStore({ endpoints: small.endpoints, txnOps: 16, batchConcurrency: 2 });
    // Counts the plain updates in flight (the fallback's requests) around the real ones.
    let inFlight = 0;
    let most = 0;
    const update = s.update.bind(s);
    s.update = async (...args) => {
      most = Math.max(most, ++inFlight);
      try {
        return await update(...args);
      } finally {
        inFlight--;
      }
    };
    try {
      const p = uniquePrefix();
      const revs = await seed(s, p, 40);
      const outcomes = await s.updateMany(revs.map((rev, i) => ({ key: keyOf(p, i), value: Buffer.from(`new-${i}`), expectedRevision: rev })));
      assert.ok(outcomes.every((o) => o.ok), 'every op applied, one transaction per key');
      assert.ok(most >= 1 && most <= 2, `at most batchConcurrency (2) updates at once, saw ${most}`);
      // Ops without a revision to compare go one per key from the start (NOT_FOUND / CONFLICT each).
      most = 0;
      const bare = await s.updateMany(Array.from({ length: 40 }, (_, i) => ({ key: keyOf(p, i), value: Buffer.from('x'), expectedRevision: 0 })));
      assert.ok(bare.every((o) => !o.ok && o.error instanceof StoreError && o.error.code === 'CONFLICT'));
      assert.ok(most >= 1 && most <= 2, `at most batchConcurrency (2) updates at once, saw ${most}`);
    } finally {
      await s.close();
      await small.cleanup();
    }
  });
});
