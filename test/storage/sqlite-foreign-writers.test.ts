// Two processes writing one embedded store (`atrest rewrite` next to `atrest serve`): modelled by two
// store instances (two connections) on one file. Writes through B reach a watch on A, in revision
// order with their prev values, interleaved with A's own writes; compare-and-swap holds across them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { isStoreError } from '../../src/storage/errors.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { WatchEvent } from '../../src/storage/types.js';
import { makeTempDir, waitFor } from '../helpers/plugin.js';

test('writes of another connection reach this store\'s watchers, in order, with CAS across both', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-sqlite-foreign-');
  const file = join(dir, 'store.db');
  const a = openSqliteStore(file, { foreignPollMs: 20 });
  const b = openSqliteStore(file);
  try {
    const r1 = await a.create('/registry/secrets/default/x', Buffer.from('a1'));
    const events: WatchEvent[] = [];
    const errors: Error[] = [];
    const watch = a.watch('/registry/secrets/', { afterRevision: r1, onEvent: (e) => events.push(e), onError: (e) => errors.push(e) });

    const r2 = await b.update('/registry/secrets/default/x', Buffer.from('b2'), r1);
    await waitFor('the watch on A sees B\'s update', () => events.length === 1);
    const r3 = await a.create('/registry/secrets/default/y', Buffer.from('a3'));
    const r4 = await b.create('/registry/secrets/default/z', Buffer.from('b4'));
    const outcomes = await b.updateMany([
      { key: '/registry/secrets/default/y', value: Buffer.from('b5'), expectedRevision: r3 },
      { key: '/registry/secrets/default/x', value: Buffer.from('stale'), expectedRevision: r1 },
    ]);
    assert.equal(outcomes[0]?.ok, true);
    assert.ok(!outcomes[1]?.ok && isStoreError(outcomes[1]?.error, 'CONFLICT'), 'B\'s CAS sees A\'s and its own revisions');
    const r5 = outcomes[0]?.ok ? outcomes[0].revision : 0;
    await assert.rejects(a.update('/registry/secrets/default/y', Buffer.from('a-late'), r3), (e: unknown) => isStoreError(e, 'CONFLICT'), 'A\'s CAS sees B\'s write');
    await b.delete('/registry/secrets/default/z');
    await b.create('/registry/configmaps/default/other', Buffer.from('not watched'));

    await waitFor('all five events', () => events.length >= 5);
    assert.deepEqual(errors, []);
    const summary = events.map((e) => (e.type === 'put' ? `put ${e.kv.key} ${e.kv.value.toString()} ${e.kv.modRevision} prev=${e.prev?.value.toString() ?? '-'}` : `delete ${e.key} prev=${e.prev?.value.toString() ?? '-'}`));
    assert.deepEqual(summary, [
      `put /registry/secrets/default/x b2 ${r2} prev=a1`,
      `put /registry/secrets/default/y a3 ${r3} prev=-`,
      `put /registry/secrets/default/z b4 ${r4} prev=-`,
      `put /registry/secrets/default/y b5 ${r5} prev=a3`,
      'delete /registry/secrets/default/z prev=b4',
    ]);
    watch.close();
  } finally {
    await b.close();
    await a.close();
    await cleanup();
  }
});

test('a compaction by the other connection is seen: reading below it is COMPACTED, and it never goes back', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-sqlite-foreign-');
  const file = join(dir, 'store.db');
  const a = openSqliteStore(file, { compactIntervalMs: 0 });
  const b = openSqliteStore(file, { compactIntervalMs: 0 });
  try {
    const r1 = await a.create('/k', Buffer.from('1'));
    const r2 = await a.update('/k', Buffer.from('2'), r1);
    // A has read the compaction point (none) before B compacts: what it remembers must not hide B's.
    assert.equal((await a.list('/', { revision: r1 })).items.length, 1);
    assert.equal(a.compactRevision(), 0);
    await b.compact(r2);
    await assert.rejects(a.list('/', { revision: r1 }), (e: unknown) => isStoreError(e, 'COMPACTED'));
    // A compaction request below what the other connection already did never moves it back.
    await a.compact(r1);
    assert.equal(a.compactRevision(), r2);
    await assert.rejects(a.list('/', { revision: r1 }), (e: unknown) => isStoreError(e, 'COMPACTED'));
    // Once more after A has read it: B compacts further, A's next list page sees it.
    const r3 = await a.update('/k', Buffer.from('3'), r2);
    const r4 = await a.update('/k', Buffer.from('4'), r3);
    assert.equal((await a.list('/', { revision: r3 })).items.length, 1);
    await b.compact(r4);
    await assert.rejects(a.list('/', { revision: r3 }), (e: unknown) => isStoreError(e, 'COMPACTED'));
    assert.equal(a.compactRevision(), r4);
    // A's own compaction (its commit does not change its data_version) is seen at once too.
    const r5 = await a.update('/k', Buffer.from('5'), r4);
    const r6 = await a.update('/k', Buffer.from('6'), r5);
    await a.compact(r6);
    await assert.rejects(a.list('/', { revision: r5 }), (e: unknown) => isStoreError(e, 'COMPACTED'));
    assert.equal(b.compactRevision(), r6, 'and by B, for which it is another connection\'s commit');
  } finally {
    await b.close();
    await a.close();
    await cleanup();
  }
});
