// The namespace check of creates: a watch-fed namespace cache plus a create transaction guarded by
// the namespace's revision (etcd here; the embedded store's race with a namespace deletion at the end). Two `atrest serve` on one etcd see each other's namespaces
// (created, Terminating, deleted) with the answers kube gives (201, 403 Forbidden, 404 NotFound);
// a cache that is behind (frozen here) never lets a create through that a live read would refuse;
// and a create with a warm cache is one etcd round trip (no namespace read).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NamespaceCache, type CachedNamespace, type NamespaceLookup } from '../../src/api/namespace-cache.js';
import { ObjectRepository } from '../../src/api/object-repository.js';
import { ResourceHandlers, type ResourceRequest } from '../../src/api/resource-handlers.js';
import { namespaces, secrets } from '../../src/api/resource-types.js';
import { EncryptedStore } from '../../src/storage/encrypted-store.js';
import { openEtcdStore } from '../../src/storage/etcd.js';
import { openSqliteStore, STORE_FILE_NAME } from '../../src/storage/sqlite.js';
import { StoreError } from '../../src/storage/errors.js';
import type { Store, WatchOptions } from '../../src/storage/types.js';
import type { Transformer } from '../../src/transform/types.js';
import { IdentityTransformer } from '../../src/transform/identity.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { apiRequest, startTestServer, type TestServer } from '../helpers/server.js';
import { inProcessLogger } from '../helpers/test-log.js';

const secretBody = (name: string) => JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, data: { k: 'dg==' } });
const nsBody = (name: string) => JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('namespace cache and guarded creates on etcd', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  let etcd: EtcdCluster;
  let dir: string;
  let a: TestServer;
  let b: TestServer;
  let raw: ReturnType<typeof openEtcdStore>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'atrest-ns-cache-'));
    etcd = await startEtcdCluster(1);
    const common = { etcdServers: etcd.endpoints.join(',') };
    a = await startTestServer({ ...common, dataDir: join(dir, 'a') }, mkdtempSync(join(tmpdir(), 'atrest-ns-a-')));
    b = await startTestServer({ ...common, dataDir: join(dir, 'b') }, mkdtempSync(join(tmpdir(), 'atrest-ns-b-')));
    raw = openEtcdStore({ endpoints: etcd.endpoints });
  });

  after(async () => {
    await raw?.close();
    await a?.close();
    await b?.close();
    await etcd?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a namespace created through another server takes creates at once; deleted there, creates get 404', async () => {
    assert.equal((await apiRequest(b.server, 'POST', '/api/v1/namespaces', { body: nsBody('team-a') })).status, 201);
    // Right away (A's cache may not have the namespace yet: a miss is a live read).
    const created = await apiRequest(a.server, 'POST', '/api/v1/namespaces/team-a/secrets', { body: secretBody('s1') });
    assert.equal(created.status, 201, created.text);
    assert.equal((await apiRequest(b.server, 'GET', '/api/v1/namespaces/team-a/secrets/s1')).status, 200);

    assert.equal((await apiRequest(b.server, 'DELETE', '/api/v1/namespaces/team-a')).status, 200);
    const refused = await apiRequest(a.server, 'POST', '/api/v1/namespaces/team-a/secrets', { body: secretBody('s2') });
    assert.equal(refused.status, 404, refused.text);
    assert.equal(refused.json<{ reason: string; details: { kind: string; name: string } }>().reason, 'NotFound');
    assert.deepEqual(refused.json<{ details: { kind: string; name: string } }>().details, { name: 'team-a', kind: 'namespaces' });
    assert.equal(await raw.get('/registry/secrets/team-a/s2'), undefined, 'nothing was written');

    // Recreated through B: A takes creates in it again.
    assert.equal((await apiRequest(b.server, 'POST', '/api/v1/namespaces', { body: nsBody('team-a') })).status, 201);
    assert.equal((await apiRequest(a.server, 'POST', '/api/v1/namespaces/team-a/secrets', { body: secretBody('s3') })).status, 201);
  });

  it('a namespace another replica marked Terminating refuses creates with 403 on every server', async () => {
    assert.equal((await apiRequest(a.server, 'POST', '/api/v1/namespaces', { body: nsBody('going') })).status, 201);
    assert.equal((await apiRequest(a.server, 'POST', '/api/v1/namespaces/going/secrets', { body: secretBody('before') })).status, 201);
    // What another replica's namespace deletion writes first: the namespace with a deletionTimestamp.
    const key = '/registry/namespaces/going';
    const cur = await raw.get(key);
    const obj = JSON.parse(cur!.value.toString('utf8')) as { metadata: Record<string, unknown>; status?: unknown };
    obj.metadata['deletionTimestamp'] = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    obj.status = { phase: 'Terminating' };
    await raw.update(key, Buffer.from(JSON.stringify(obj)), cur!.modRevision);
    for (const s of [a, b]) {
      const r = await apiRequest(s.server, 'POST', '/api/v1/namespaces/going/secrets', { body: secretBody('after') });
      assert.equal(r.status, 403, r.text);
      const status = r.json<{ reason: string; message: string }>();
      assert.equal(status.reason, 'Forbidden');
      assert.match(status.message, /unable to create new content in namespace going because it is being terminated/);
    }
    assert.equal(await raw.get('/registry/secrets/going/after'), undefined);
  });
});

describe('guarded creates with a cache that is behind', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  let etcd: EtcdCluster;
  let store: ReturnType<typeof openEtcdStore>;
  let repo: ObjectRepository;
  const calls: string[] = [];

  before(async () => {
    etcd = await startEtcdCluster(1);
    store = openEtcdStore({ endpoints: etcd.endpoints });
    // Counts the store round trips of each create.
    const counting = new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function' || !['get', 'create', 'createGuarded', 'update', 'list', 'revision'].includes(String(prop))) return v;
        return (...args: unknown[]) => {
          calls.push(String(prop));
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    }) as Store;
    repo = new ObjectRepository(new EncryptedStore(counting, () => new IdentityTransformer()), '/registry');
  });

  after(async () => {
    await store?.close();
    await etcd?.cleanup();
  });

  const request = (namespace: string, name: string): ResourceRequest => ({
    rt: secrets, namespace, query: new URLSearchParams(), body: Buffer.from(secretBody(name)), contentType: 'application/json',
    wantTable: false, warnings: [], fieldManager: 'test',
  });
  const frozen = (entries: Record<string, CachedNamespace>): NamespaceLookup => ({ get: (name) => entries[name] });
  const createNamespace = async (name: string) => (await repo.create(namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } })).metadata.resourceVersion;

  it('with a warm cache a create is one store call (the guarded create), no namespace read', async () => {
    const cache = new NamespaceCache(repo, inProcessLogger('api-server'));
    try {
      await createNamespace('warm');
      await cache.start();
      assert.ok(cache.isSynced);
      await waitFor(() => cache.get('warm') !== undefined, 'the namespace in the cache');
      const handlers = new ResourceHandlers({ repo, log: inProcessLogger('api-server'), namespaceCache: cache });
      calls.length = 0;
      const reply = await handlers.create(request('warm', 'one-trip'));
      assert.equal(reply.code, 201);
      assert.deepEqual(calls, ['createGuarded']);
      // A namespace the cache does not know: a live read, then the guarded create.
      calls.length = 0;
      await assert.rejects(handlers.create(request('unknown', 'x')), (err: unknown) => (err as { httpCode?: number }).httpCode === 404);
      assert.deepEqual(calls, ['get']);
    } finally {
      cache.close();
    }
  });

  it('a stale Active entry: Terminating → 403, deleted → 404, only changed → created at the new revision; nothing written on refusal', async () => {
    const revA = Number(await createNamespace('stale-t'));
    const revB = Number(await createNamespace('stale-d'));
    const revC = Number(await createNamespace('stale-l'));
    const handlers = new ResourceHandlers({
      repo, log: inProcessLogger('api-server'),
      namespaceCache: frozen({ 'stale-t': { revision: revA, terminating: false }, 'stale-d': { revision: revB, terminating: false }, 'stale-l': { revision: revC, terminating: false } }),
    });
    const t = (await repo.get(namespaces, undefined, 'stale-t'))!;
    await repo.update(namespaces, { ...t.obj, metadata: { ...t.obj.metadata, deletionTimestamp: '2026-01-01T00:00:00Z' } }, t.revision);
    await repo.delete(namespaces, undefined, 'stale-d');
    const l = (await repo.get(namespaces, undefined, 'stale-l'))!;
    await repo.update(namespaces, { ...l.obj, metadata: { ...l.obj.metadata, labels: { ...l.obj.metadata.labels, team: 'x' } } }, l.revision);

    await assert.rejects(handlers.create(request('stale-t', 's')), (err: unknown) => (err as { httpCode?: number }).httpCode === 403);
    await assert.rejects(handlers.create(request('stale-d', 's')), (err: unknown) => (err as { httpCode?: number }).httpCode === 404);
    assert.equal(await store.get('/registry/secrets/stale-t/s'), undefined);
    assert.equal(await store.get('/registry/secrets/stale-d/s'), undefined);
    calls.length = 0;
    const ok = await handlers.create(request('stale-l', 's'));
    assert.equal(ok.code, 201);
    assert.deepEqual(calls, ['createGuarded', 'get', 'createGuarded'], 'the guard failed, a live read, the create again');
    assert.ok(await store.get('/registry/secrets/stale-l/s'));
  });

  it('the cache follows namespace changes through the watch and lists again after the watch breaks', async () => {
    // The store's watch handlers are kept, to break the watch the way a compaction or an outage does.
    const broken: Array<(err: Error) => void> = [];
    const breakable = new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== 'watch' || typeof v !== 'function') return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        return (prefix: string, options: WatchOptions) => {
          broken.push((err) => options.onError(err));
          return (v as Store['watch']).call(target, prefix, options);
        };
      },
    }) as Store;
    const cacheRepo = new ObjectRepository(new EncryptedStore(breakable, () => new IdentityTransformer()), '/registry');
    const cache = new NamespaceCache(cacheRepo, inProcessLogger('api-server'), { resyncDelayMs: 1000 });
    try {
      await cache.start();
      assert.ok(cache.isSynced);
      assert.ok(cache.get('stale-l'), 'the namespaces of the earlier tests were listed');
      const rev = Number(await createNamespace('followed'));
      await waitFor(() => cache.get('followed')?.revision === rev, 'the new namespace');
      const cur = (await repo.get(namespaces, undefined, 'followed'))!;
      const marked = await repo.update(namespaces, { ...cur.obj, metadata: { ...cur.obj.metadata, deletionTimestamp: '2026-01-01T00:00:00Z' } }, cur.revision);
      await waitFor(() => cache.get('followed')?.terminating === true && cache.get('followed')?.revision === Number(marked.metadata.resourceVersion), 'Terminating');
      await repo.delete(namespaces, undefined, 'followed');
      await waitFor(() => cache.get('followed') === undefined, 'the deletion');

      // The watch breaks: the cache is dropped at once (every lookup goes to the store), then listed again.
      assert.equal(broken.length, 1);
      broken[0]!(new StoreError('COMPACTED', 'watch of /registry/namespaces/ from revision 1: required revision has been compacted'));
      await waitFor(() => !cache.isSynced, 'the cache dropped'); // (the error reaches it through the store's event queue)
      assert.equal(cache.get('stale-l'), undefined, 'nothing is answered from a broken cache');
      await createNamespace('while-broken');
      await waitFor(() => cache.isSynced && cache.get('while-broken') !== undefined, 'listed again');
      assert.ok(cache.get('stale-l'), 'the namespaces listed again');
      assert.equal(broken.length, 2, 'a new watch');
    } finally {
      cache.close();
    }
  });
});

describe('embedded store: a create racing the deletion of its namespace', () => {
  let dir: string;
  let store: ReturnType<typeof openSqliteStore>;
  let repo: ObjectRepository;
  // Holds the encryption of secrets until released: the window between a create's namespace check
  // and its write (with a KMS provider, a plugin round trip).
  let held: Promise<void> | undefined;
  let reachedEncryption: (() => void) | undefined;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'atrest-ns-race-'));
    store = openSqliteStore(join(dir, STORE_FILE_NAME), { compactIntervalMs: 0 });
    const identity = new IdentityTransformer();
    const gated: Transformer = {
      toStorage: async (plain, ctx) => {
        reachedEncryption?.();
        await held;
        return identity.toStorage(plain, ctx);
      },
      fromStorage: (stored, ctx) => identity.fromStorage(stored, ctx),
    };
    repo = new ObjectRepository(new EncryptedStore(store, (key) => (key.startsWith('/registry/secrets/') ? gated : identity)), '/registry');
  });

  after(async () => {
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const common = { query: new URLSearchParams(), contentType: 'application/json', wantTable: false, warnings: [], fieldManager: 'test' };
  const createSecret = (namespace: string): ResourceRequest => ({ ...common, rt: secrets, namespace, body: Buffer.from(secretBody('late')) });
  const deleteNamespace = (name: string): ResourceRequest => ({ ...common, rt: namespaces, name, body: Buffer.alloc(0) });

  for (const withCache of [false, true]) {
    it(`a create checked before the deletion and written after it is refused: nothing is left in the deleted namespace (${withCache ? 'with' : 'without'} the namespace cache)`, async () => {
      const ns = withCache ? 'doomed-cached' : 'doomed';
      const cache = withCache ? new NamespaceCache(repo, inProcessLogger('api-server')) : undefined;
      try {
        await repo.create(namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
        if (cache) {
          await cache.start();
          await waitFor(() => cache.get(ns) !== undefined, 'the namespace in the cache');
        }
        const handlers = new ResourceHandlers({ repo, log: inProcessLogger('api-server'), ...(cache ? { namespaceCache: cache } : {}) });
        let release!: () => void;
        held = new Promise((r) => (release = r));
        const encrypting = new Promise<void>((r) => (reachedEncryption = r));
        // The create passes its namespace check, then waits in its encryption.
        const create = handlers.create(createSecret(ns)).then((reply) => ({ reply }), (err: unknown) => ({ err }));
        await encrypting;
        // Meanwhile the namespace is deleted with its contents (Terminating, contents, the namespace).
        assert.equal((await handlers.delete(deleteNamespace(ns))).code, 200);
        assert.equal(await repo.get(namespaces, undefined, ns), undefined);
        release();
        const outcome = await create;
        assert.ok('err' in outcome, 'the create is refused');
        assert.equal((outcome.err as { httpCode?: number }).httpCode, 404, String(outcome.err));
        assert.equal(await store.get(`/registry/secrets/${ns}/late`), undefined, 'no object left in the deleted namespace');
        assert.deepEqual((await store.list(`/registry/secrets/${ns}/`)).items, []);
      } finally {
        held = undefined;
        reachedEncryption = undefined;
        cache?.close();
      }
    });
  }
});
