// Lists over corrupt values (KEP-3926) on the paths kubectl does not take: an unpaginated list larger
// than the server's buffer (scanned for corrupt values first, then streamed: the same objects as a
// buffered one), more than 100 corrupt values (kube's cap and its "too many" cause), and a
// paginated list, whose range ends after `limit` readable objects; and the unsafe delete's option
// handling over HTTP (bad values, dry run, undecodable values, a broken Namespace object).
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { Store } from '../../src/storage/types.js';
import { apiRequest, startTestServer, writeAesGcmConfig, type TestServer } from '../helpers/server.js';

type Status = { reason: string; message: string; details: { name: string; kind: string; causes: Array<{ reason: string; field?: string; message: string }> } };
const BROKEN = Buffer.from('k8s:enc:aesgcm:v1:key1:not-a-valid-ciphertext');

describe('lists over corrupt values', () => {
  let ts: TestServer;
  let store: Store;
  const get = (path: string) => apiRequest(ts.server, 'GET', path);

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atrest-corrupt-list-'));
    const { path } = writeAesGcmConfig(dir);
    store = openSqliteStore(join(dir, 'store.db'));
    // A buffer of 8 KiB of JSON: the 1,200 objects below take the scan-then-stream path.
    ts = await startTestServer({ encryptionProviderConfig: path, store, listBufferChars: 8 * 1024 }, dir);
    await apiRequest(ts.server, 'POST', '/api/v1/namespaces', { body: JSON.stringify({ metadata: { name: 'big' } }) });
    for (let i = 0; i < 1200; i++) {
      const name = `cm-${String(i).padStart(4, '0')}`;
      await store.create(`/registry/configmaps/big/${name}`, Buffer.from(JSON.stringify({ kind: 'ConfigMap', apiVersion: 'v1', metadata: { name, namespace: 'big', uid: `u-${i}` }, data: { i: String(i) } })));
    }
  });
  after(async () => {
    await ts?.close();
  });

  test('past the buffer: a clean list is streamed whole and in order; one corrupt value at the end is a 500 naming it', async () => {
    const ok = await get('/api/v1/namespaces/big/configmaps');
    assert.equal(ok.status, 200);
    const items = ok.json<{ items: Array<{ data: { i: string } }> }>().items;
    assert.deepEqual(items.map((o) => o.data.i), Array.from({ length: 1200 }, (_, i) => String(i)));

    await store.create('/registry/configmaps/big/zz-last', BROKEN);
    await store.create('/registry/configmaps/big/cm-0600-x', Buffer.from('not json at all'));
    const bad = await get('/api/v1/namespaces/big/configmaps');
    assert.equal(bad.status, 500, 'no byte of a 200 was sent');
    const s = bad.json<Status>();
    assert.equal(s.reason, 'StoreReadError');
    assert.deepEqual(s.details.causes.map((c) => c.field), ['/registry/configmaps/big/cm-0600-x', '/registry/configmaps/big/zz-last']);
    assert.match(s.details.causes[0]?.message ?? '', /object not decodable: the value is not a JSON object/);
    assert.match(s.details.causes[1]?.message ?? '', /data from the storage is not transformable: /);
    await store.delete('/registry/configmaps/big/zz-last');
    await store.delete('/registry/configmaps/big/cm-0600-x');
  });

  test('more than 100 corrupt values: the first 100 are named, then kube\'s "too many" cause', async () => {
    const keys = Array.from({ length: 105 }, (_, i) => `/registry/secrets/default/bad-${String(i).padStart(3, '0')}`);
    for (const k of keys) await store.create(k, BROKEN);
    try {
      const bad = await get('/api/v1/secrets');
      assert.equal(bad.status, 500);
      const s = bad.json<Status>();
      assert.equal(s.details.causes.length, 101);
      assert.deepEqual(s.details.causes.slice(0, 100).map((c) => c.field), keys.slice(0, 100));
      assert.deepEqual(s.details.causes[100], { reason: 'FieldValueTooMany', message: 'too many errors, the list is truncated' });
      assert.match(s.message, /^failed to read one or more secrets from the storage: 100\+ objects cannot be decrypted or decoded: /);
      assert.match(s.message, /and more \(the first 100 are named; atrest verify lists all\)$/);
    } finally {
      for (const k of keys) await store.delete(k);
    }
  });

  test('limit: the range ends after `limit` readable objects, as kube\'s; corrupt values before that are named', async () => {
    await store.create('/registry/configmaps/big/cm-0001-x', BROKEN);
    await store.create('/registry/configmaps/big/cm-0900-x', BROKEN);
    try {
      const first = await get('/api/v1/namespaces/big/configmaps?limit=10');
      assert.equal(first.status, 500);
      assert.deepEqual(first.json<Status>().details.causes.map((c) => c.field), ['/registry/configmaps/big/cm-0001-x']);
      // A range holding both names both.
      const r = (await get('/api/v1/namespaces/big/configmaps?limit=1200')).json<Status>();
      assert.deepEqual(r.details.causes.map((c) => c.field), ['/registry/configmaps/big/cm-0001-x', '/registry/configmaps/big/cm-0900-x']);
    } finally {
      await store.delete('/registry/configmaps/big/cm-0001-x');
      await store.delete('/registry/configmaps/big/cm-0900-x');
    }
  });
});

describe('unsafe delete (AllowUnsafeMalformedObjectDeletion) over HTTP', () => {
  let ts: TestServer;
  let store: Store;
  /** Values the server's store returned from lists (the real SQLite store, counted). */
  let listed = 0;
  const del = (path: string, body?: string) => apiRequest(ts.server, 'DELETE', path, body === undefined ? {} : { body });

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atrest-unsafe-delete-'));
    const { path } = writeAesGcmConfig(dir);
    const sqlite = openSqliteStore(join(dir, 'store.db'));
    store = new Proxy(sqlite, {
      get(target, prop) {
        if (prop === 'list') {
          return async (...args: Parameters<Store['list']>) => {
            const page = await target.list(...args);
            listed += page.items.length;
            return page;
          };
        }
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    ts = await startTestServer({ encryptionProviderConfig: path, store, featureGates: { AllowUnsafeMalformedObjectDeletion: true } }, dir);
  });
  after(async () => {
    await ts?.close();
  });

  test('option values: a non-boolean is a 400; dry run reports without deleting; undecodable values and Namespace objects go too', async () => {
    await store.create('/registry/secrets/default/garbage', Buffer.from('not json'));
    const bad = await del('/api/v1/namespaces/default/secrets/garbage', JSON.stringify({ ignoreStoreReadErrorWithClusterBreakingPotential: 'yes' }));
    assert.equal(bad.status, 400, bad.text);
    assert.equal((await del('/api/v1/namespaces/default/secrets/garbage?ignoreStoreReadErrorWithClusterBreakingPotential=maybe')).status, 400);

    const dry = await del('/api/v1/namespaces/default/secrets/garbage?ignoreStoreReadErrorWithClusterBreakingPotential=true&dryRun=All');
    assert.equal(dry.status, 200, dry.text);
    assert.ok(await store.get('/registry/secrets/default/garbage'), 'a dry run deletes nothing');
    const gone = await del('/api/v1/namespaces/default/secrets/garbage', JSON.stringify({ kind: 'DeleteOptions', apiVersion: 'v1', ignoreStoreReadErrorWithClusterBreakingPotential: true }));
    assert.equal(gone.status, 200, gone.text);
    assert.equal(await store.get('/registry/secrets/default/garbage'), undefined);

    // A Namespace object that does not decode: removed by key; what it held stays (cluster-breaking potential).
    await store.create('/registry/namespaces/broken-ns', BROKEN);
    await store.create('/registry/configmaps/broken-ns/left', Buffer.from(JSON.stringify({ kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'left', namespace: 'broken-ns' } })));
    assert.equal((await del('/api/v1/namespaces/broken-ns')).status, 500, 'the normal delete reads it');
    const ns = await del('/api/v1/namespaces/broken-ns?ignoreStoreReadErrorWithClusterBreakingPotential=true');
    assert.equal(ns.status, 200, ns.text);
    assert.deepEqual(ns.json()['details'], { name: 'broken-ns', kind: 'Namespace' });
    assert.equal(await store.get('/registry/namespaces/broken-ns'), undefined);
    assert.ok(await store.get('/registry/configmaps/broken-ns/left'), 'its contents are not deleted');
  });

  test('each unsafe delete in a Terminating namespace reads a key per kind, not the namespace; the last one finishes it', async () => {
    assert.equal((await apiRequest(ts.server, 'POST', '/api/v1/namespaces', { body: JSON.stringify({ metadata: { name: 'many' } }) })).status, 201);
    const n = 30;
    const names = Array.from({ length: n }, (_, i) => `bad-${String(i).padStart(2, '0')}`);
    for (const name of names) await store.create(`/registry/secrets/many/${name}`, BROKEN);
    const blocked = await del('/api/v1/namespaces/many');
    assert.equal(blocked.status, 500, blocked.text);
    assert.match(blocked.json<Status>().message, /stuck Terminating: .*30 objects cannot be decrypted/);

    const perDelete: number[] = [];
    for (const name of names) {
      listed = 0;
      const r = await del(`/api/v1/namespaces/many/secrets/${name}?ignoreStoreReadErrorWithClusterBreakingPotential=true`);
      assert.equal(r.status, 200, r.text);
      perDelete.push(listed);
      const ns = await apiRequest(ts.server, 'GET', '/api/v1/namespaces/many');
      assert.equal(ns.status, name === names[n - 1] ? 404 : 200, `after ${name}: ${ns.text}`);
    }
    // Secrets and configmaps: at most one value listed per kind and delete (re-running the content
    // deletion listed all the corrupt values left: n - 1 for the first delete).
    assert.ok(Math.max(...perDelete) <= 2, `values listed per delete: ${perDelete.join(',')}`);
  });
});
