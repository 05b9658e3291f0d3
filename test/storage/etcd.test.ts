// The etcd backend against a real single-member etcd started for this file: the shared conformance
// suite, plus etcd-only behaviour (unreachable endpoints, keys read back with etcdctl's view).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StoreError } from '../../src/storage/errors.js';
import { startCompactor, type Compactor } from '../../src/storage/compactor.js';
import { openEtcdStore } from '../../src/storage/etcd.js';
import { etcdAvailable, freePort, startEtcdCluster } from '../helpers/etcd.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { revOf, storeConformance, uniquePrefix, waitFor } from './conformance.js';

if (!etcdAvailable()) {
  describe('etcd store', () => {
    it('needs /usr/bin/etcd (Debian etcd-server)', (t) => t.skip('etcd not installed'));
  });
} else {
  storeConformance('etcd', async () => {
    const etcd = await startEtcdCluster(1);
    const store = openEtcdStore({ endpoints: etcd.endpoints });
    return {
      store,
      cleanup: async () => {
        await store.close();
        await etcd.cleanup();
      },
    };
  }, 30);

  describe('etcd store: unreachable', () => {
    it('an endpoint nobody listens on gives UNAVAILABLE within the request timeout', async () => {
      const port = await freePort();
      const store = openEtcdStore({ endpoints: [`http://127.0.0.1:${port}`], requestTimeoutMs: 1500, dialTimeoutMs: 500 });
      try {
        await assert.rejects(store.get('/registry/x'), (err: unknown) => err instanceof StoreError && err.code === 'UNAVAILABLE' && err.message.includes('/registry/x'));
        await assert.rejects(store.ping(), (err: unknown) => err instanceof StoreError && err.code === 'UNAVAILABLE');
      } finally {
        await store.close();
      }
    });
  });
}

describe('etcd store: watch across a dropped connection', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  it('a watch cut off while catching up resumes after the last delivered event: none lost, none repeated', async () => {
    const etcd = await startEtcdCluster(1);
    const writer = openEtcdStore({ endpoints: etcd.endpoints });
    const proxy = await startTcpProxy(Number(new URL(etcd.endpoints[0] as string).port));
    const watching = openEtcdStore({ endpoints: [proxy.url] });
    try {
      const p = uniquePrefix();
      const start = await writer.revision();
      const revs: number[] = [];
      // etcd replays history to a new watch in batches of 1000 revisions, 100 ms apart.
      for (let i = 0; i < 3000; i += 100) {
        const batch = await Promise.all(Array.from({ length: 100 }, (_, j) => writer.create(`${p}${String(i + j).padStart(5, '0')}`, Buffer.from(String(i + j)))));
        revs.push(...batch);
      }
      revs.sort((a, b) => a - b);
      const events: number[] = [];
      const errors: Error[] = [];
      let dropped = false;
      const w = watching.watch(p, {
        afterRevision: start,
        onEvent: (e) => {
          events.push(revOf(e));
          if (!dropped) {
            dropped = true;
            proxy.dropConnections();
          }
        },
        onError: (e) => errors.push(e),
      });
      try {
        await waitFor(() => events.length >= revs.length || errors.length > 0, 'the whole history', 30_000);
        assert.deepEqual(errors, []);
        assert.ok(proxy.connections() >= 2, 'the watch reconnected');
        assert.deepEqual(events, revs);
      } finally {
        w.close();
      }
    } finally {
      await watching.close();
      await writer.close();
      await proxy.close();
      await etcd.cleanup();
    }
  });
});

describe('etcd store: a write whose response is lost', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  it('is retried and recognised as applied, not reported as KEY_EXISTS or CONFLICT', async () => {
    const etcd = await startEtcdCluster(1);
    const proxy = await startTcpProxy(Number(new URL(etcd.endpoints[0] as string).port));
    const store = openEtcdStore({ endpoints: [proxy.url] });
    const direct = openEtcdStore({ endpoints: etcd.endpoints });
    try {
      const p = uniquePrefix();
      await store.ping(); // connect first, so the next server bytes are the response to the write
      proxy.dropNextResponse();
      const r1 = await store.create(p + 'k', Buffer.from('v1'));
      assert.ok(proxy.connections() >= 2, 'the first connection was cut and the store reconnected');
      assert.deepEqual(await direct.get(p + 'k'), { key: p + 'k', value: Buffer.from('v1'), modRevision: r1, createRevision: r1 });
      proxy.dropNextResponse();
      const r2 = await store.update(p + 'k', Buffer.from('v2'), r1);
      assert.equal((await direct.get(p + 'k'))?.modRevision, r2);
      assert.ok(proxy.connections() >= 3);
      // A real conflict after a retry is still a conflict.
      await direct.update(p + 'k', Buffer.from('other'), r2);
      proxy.dropNextResponse();
      await assert.rejects(store.update(p + 'k', Buffer.from('v3'), r2), (err: unknown) => err instanceof StoreError && err.code === 'CONFLICT');
    } finally {
      await store.close();
      await direct.close();
      await proxy.close();
      await etcd.cleanup();
    }
  });
});

describe('etcd store over TLS', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  it('works with the CA and a client certificate; without the client certificate it is UNAVAILABLE', async () => {
    const etcd = await startEtcdCluster(1, { tls: true });
    const tls = etcd.tls;
    assert.ok(tls);
    assert.match(etcd.endpoints[0] as string, /^https:/);
    const store = openEtcdStore({ endpoints: etcd.endpoints, tls: { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey } });
    const noClientCert = openEtcdStore({ endpoints: etcd.endpoints, tls: { ca: tls.ca }, requestTimeoutMs: 1500 });
    try {
      const rev = await store.create('/registry/secrets/default/tls', Buffer.from([0, 1, 2, 255]));
      assert.deepEqual((await store.get('/registry/secrets/default/tls'))?.value, Buffer.from([0, 1, 2, 255]));
      assert.equal(await store.revision(), rev);
      await store.ping();
      await assert.rejects(noClientCert.get('/registry/secrets/default/tls'), (err: unknown) => err instanceof StoreError && err.code === 'UNAVAILABLE');
    } finally {
      await store.close();
      await noClientCert.close();
      await etcd.cleanup();
    }
  });
});

describe('startCompactor on etcd', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  it('compacts to the revision seen one interval earlier, keeping current values', async () => {
    const etcd = await startEtcdCluster(1);
    const store = openEtcdStore({ endpoints: etcd.endpoints });
    let compactor: Compactor | undefined;
    try {
      const r1 = await store.create('/c/k', Buffer.from('v1'));
      const r2 = await store.update('/c/k', Buffer.from('v2'), r1);
      compactor = startCompactor(store, { intervalMs: 50 });
      const compacted = async () => {
        try {
          await store.list('/c/', { revision: r1 });
          return false;
        } catch (err) {
          if (err instanceof StoreError && err.code === 'COMPACTED') return true;
          throw err;
        }
      };
      const deadline = Date.now() + 10_000;
      while (!(await compacted())) {
        assert.ok(Date.now() < deadline, 'revision r1 was never compacted');
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.deepEqual(await store.get('/c/k'), { key: '/c/k', value: Buffer.from('v2'), modRevision: r2, createRevision: r1 });
    } finally {
      compactor?.stop();
      await store.close();
      await etcd.cleanup();
    }
  });
});

describe('etcd store: the compaction point of a refused watch', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  /** etcd's own count of Range requests it has received (its /metrics), to see how many reads a lookup costs. */
  async function rangeRequests(endpoint: string): Promise<number> {
    const text = await (await fetch(`${endpoint}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('grpc_server_started_total{') && l.includes('grpc_method="Range"'));
    assert.ok(line, 'etcd reports its Range requests');
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }

  /** The error a watch from `afterRevision` ends with. */
  function watchError(store: ReturnType<typeof openEtcdStore>, prefix: string, afterRevision: number): Promise<StoreError> {
    return new Promise((resolve) => {
      store.watch(prefix, { afterRevision, onEvent: () => undefined, onError: (err) => resolve(err as StoreError) });
    });
  }

  it('is found once and remembered; a store that cannot reach etcd says UNAVAILABLE, not "not compacted"', async () => {
    const etcd = await startEtcdCluster(1);
    const endpoint = etcd.endpoints[0] as string;
    const proxy = await startTcpProxy(Number(new URL(endpoint).port));
    const store = openEtcdStore({ endpoints: [proxy.url], requestTimeoutMs: 1500 });
    const other = openEtcdStore({ endpoints: etcd.endpoints }); // compacts behind the store's back, as another replica would
    try {
      const p = uniquePrefix();
      for (let i = 0; i < 1000; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => other.create(`${p}${i + j}`, Buffer.from('v'))));
      const c1 = (await other.revision()) - 500;
      await other.compact(c1);

      const first = await watchError(store, p, 1);
      assert.equal(first.code, 'COMPACTED');
      assert.equal(first.compactRevision, c1, 'the revision etcd compacted to (the 410 text names it)');
      const before = await rangeRequests(endpoint);
      const second = await watchError(store, p, 1);
      assert.equal(second.compactRevision, c1);
      const reads = (await rangeRequests(endpoint)) - before;
      assert.ok(reads <= 1, `a second refused watch confirms the remembered compaction point with one read, not a bisection (${reads} reads)`);

      // Compacted further elsewhere: the remembered point is a lower bound, not the answer.
      const c2 = c1 + 200;
      await other.compact(c2);
      assert.equal((await watchError(store, p, c1 + 10)).compactRevision, c2);

      // etcd out of reach: whether a revision at or above the compaction point is compacted is unknown.
      await proxy.close();
      const lookups = store as unknown as { compactedAt(revision: number): Promise<boolean>; compactRevisionAbove(revision: number): Promise<number> };
      await assert.rejects(lookups.compactedAt(c2 + 10), (err: unknown) => err instanceof StoreError && err.code === 'UNAVAILABLE');
      await assert.rejects(lookups.compactRevisionAbove(1), (err: unknown) => err instanceof StoreError && err.code === 'UNAVAILABLE');
      assert.equal(await lookups.compactedAt(c1), true, 'below the known compaction point no read is needed');
    } finally {
      await store.close();
      await other.close();
      await proxy.close();
      await etcd.cleanup();
    }
  });
});
