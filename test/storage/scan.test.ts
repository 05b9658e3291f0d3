// A long scan's page read at a revision that was compacted meanwhile goes on at the current revision.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isStoreError } from '../../src/storage/errors.js';
import { listScanPage } from '../../src/storage/scan.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';

test('listScanPage: a compacted revision is read at the current one, after the same key; other errors pass through', async () => {
  const store = openSqliteStore(':memory:', { compactIntervalMs: 0 });
  try {
    for (const k of ['a', 'b', 'c']) await store.create(`/p/${k}`, Buffer.from(k));
    const first = await listScanPage(store, '/p/', { limit: 1 });
    assert.deepEqual(first.items.map((kv) => kv.key), ['/p/a']);
    const rev = await store.update('/p/b', Buffer.from('b2'), (await store.get('/p/b'))!.modRevision);
    await store.compact(rev);
    await assert.rejects(store.list('/p/', { limit: 1, after: '/p/a', revision: first.revision }), (err) => isStoreError(err, 'COMPACTED'));
    const next = await listScanPage(store, '/p/', { limit: 1, after: '/p/a', revision: first.revision });
    assert.deepEqual(next.items.map((kv) => [kv.key, kv.value.toString()]), [['/p/b', 'b2']]);
    assert.equal(next.revision, rev);
    await store.close();
    await assert.rejects(listScanPage(store, '/p/', { limit: 1 }), (err) => isStoreError(err, 'UNAVAILABLE'));
  } finally {
    await store.close();
  }
});
