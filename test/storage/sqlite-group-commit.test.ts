// Group commit of the embedded store: writes called in the same event-loop turn share one
// transaction (one commit, one fsync), with the outcome of running them one by one — revisions in
// call order, each write's own existence/revision check seeing the writes before it, a refused write
// failing alone, a failed transaction failing (and storing) none of its writes.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { isStoreError } from '../../src/storage/errors.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { WatchEvent } from '../../src/storage/types.js';
import { makeTempDir, waitFor } from '../helpers/plugin.js';

/** Frames in the WAL file (pages written by commits since the last truncation), read by a second connection. */
function walFrames(db: Database.Database): number {
  const [row] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
  return row!.log;
}

test('concurrent writes share one commit; sequential ones do not', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-sqlite-group-');
  const file = join(dir, 'store.db');
  const store = openSqliteStore(file, { compactIntervalMs: 0 });
  const other = new Database(file);
  try {
    await store.create('/warm', Buffer.from('x'));
    other.pragma('wal_checkpoint(TRUNCATE)');
    const revs = await Promise.all(Array.from({ length: 50 }, (_, i) => store.create(`/c/${i}`, Buffer.from(`v${i}`))));
    const concurrentFrames = walFrames(other);
    other.pragma('wal_checkpoint(TRUNCATE)');
    for (let i = 0; i < 50; i++) await store.create(`/s/${i}`, Buffer.from(`v${i}`));
    const sequentialFrames = walFrames(other);
    // Every commit appends at least one frame (its last page carries the commit mark).
    assert.ok(sequentialFrames >= 50, `50 sequential creates: ${sequentialFrames} WAL frames, expected one commit each`);
    assert.ok(concurrentFrames < 10, `50 concurrent creates: ${concurrentFrames} WAL frames, expected one commit`);
    const first = revs[0]!;
    assert.deepEqual(revs, revs.map((_, i) => first + i), 'revisions follow the call order, one each');
    assert.equal((await store.list('/c/')).items.length, 50);
  } finally {
    other.close();
    await store.close();
    await cleanup();
  }
});

test('in one batch each write checks against the writes before it; a refused write fails alone', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-sqlite-group-');
  const store = openSqliteStore(join(dir, 'store.db'), { compactIntervalMs: 0 });
  try {
    const r0 = await store.create('/k', Buffer.from('0'));
    const events: WatchEvent[] = [];
    const watch = store.watch('/', { afterRevision: r0, onEvent: (e) => events.push(e), onError: (e) => assert.fail(e) });
    const settled = await Promise.allSettled([
      store.update('/k', Buffer.from('1'), r0), //        ok: r0 + 1
      store.update('/k', Buffer.from('stale'), r0), //    CONFLICT: the update before it moved /k
      store.create('/n', Buffer.from('a')), //            ok: r0 + 2
      store.create('/n', Buffer.from('again')), //        KEY_EXISTS: created just before, same batch
      store.delete('/n', r0 + 2), //                      ok: r0 + 3 (its revision is known in advance)
      store.create('/n', Buffer.from('b')), //            ok again after the delete: r0 + 4
      store.update('/missing', Buffer.from('x'), 1), //   NOT_FOUND
    ]);
    const summary = settled.map((s) => (s.status === 'fulfilled' ? (typeof s.value === 'number' ? s.value - r0 : 'deleted') : (s.reason as { code?: string }).code));
    assert.deepEqual(summary, [1, 'CONFLICT', 2, 'KEY_EXISTS', 'deleted', 4, 'NOT_FOUND']);
    assert.equal((await store.get('/k'))?.value.toString(), '1');
    assert.deepEqual(await store.get('/n'), { key: '/n', value: Buffer.from('b'), modRevision: r0 + 4, createRevision: r0 + 4 });
    assert.equal(await store.revision(), r0 + 4, 'refused writes took no revision');
    await waitFor('the four events', () => events.length >= 4);
    assert.deepEqual(events.map((e) => `${e.type} ${e.type === 'put' ? e.kv.modRevision - r0 : e.modRevision - r0}`), ['put 1', 'put 2', 'delete 3', 'put 4']);
    watch.close();
  } finally {
    await store.close();
    await cleanup();
  }
});

test('a transaction that fails fails every write in it, and none is stored', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-sqlite-group-');
  const file = join(dir, 'store.db');
  const store = openSqliteStore(file, { compactIntervalMs: 0 });
  const other = new Database(file);
  try {
    const r0 = await store.create('/k', Buffer.from('0'));
    // An SQLite error in the middle of the batch (not a refused write): the whole transaction rolls back.
    other.exec(`CREATE TRIGGER boom BEFORE INSERT ON kv WHEN NEW.name = '/boom' BEGIN SELECT RAISE(ABORT, 'disk says no'); END;`);
    const settled = await Promise.allSettled([
      store.create('/a', Buffer.from('a')),
      store.create('/boom', Buffer.from('b')),
      store.update('/k', Buffer.from('1'), r0),
    ]);
    for (const [i, s] of settled.entries()) {
      assert.equal(s.status, 'rejected', `write ${i} of the failed transaction was acknowledged`);
      assert.ok(isStoreError((s as PromiseRejectedResult).reason, 'UNAVAILABLE'));
    }
    assert.match(String((settled[0] as PromiseRejectedResult).reason.message), /key \/a.*disk says no/);
    assert.equal(await store.get('/a'), undefined);
    assert.equal((await store.get('/k'))?.modRevision, r0);
    other.exec('DROP TRIGGER boom');
    // The store goes on: the next batch commits.
    assert.equal(await store.create('/a', Buffer.from('a')), r0 + 1, 'the rolled-back transaction took no revision');
  } finally {
    other.close();
    await store.close();
    await cleanup();
  }
});

test('close() commits the writes already asked for; writes after close fail UNAVAILABLE', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-sqlite-group-');
  const file = join(dir, 'store.db');
  let store = openSqliteStore(file, { compactIntervalMs: 0 });
  try {
    const pending = store.create('/p', Buffer.from('pending'));
    await store.close();
    const rev = await pending;
    await assert.rejects(store.create('/q', Buffer.from('late')), (e: unknown) => isStoreError(e, 'UNAVAILABLE'));
    store = openSqliteStore(file, { compactIntervalMs: 0 });
    assert.deepEqual(await store.get('/p'), { key: '/p', value: Buffer.from('pending'), modRevision: rev, createRevision: rev });
  } finally {
    await store.close();
    await cleanup();
  }
});

test('an updateMany queued with other writes is one entry of the batch: call order, refused operations fail alone', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-sqlite-group-');
  const store = openSqliteStore(join(dir, 'store.db'), { compactIntervalMs: 0 });
  try {
    const ra = await store.create('/u/a', Buffer.from('a0'));
    const rb = await store.create('/u/b', Buffer.from('b0'));
    const [c, many, d] = await Promise.all([
      store.create('/u/c', Buffer.from('c')),
      store.updateMany([
        { key: '/u/a', value: Buffer.from('a1'), expectedRevision: ra },
        { key: '/u/b', value: Buffer.from('stale'), expectedRevision: ra },
      ]),
      store.create('/u/d', Buffer.from('d')),
    ]);
    assert.equal(c, rb + 1);
    assert.deepEqual(many[0], { ok: true, revision: rb + 2 });
    assert.ok(!many[1]!.ok && isStoreError(many[1]!.error, 'CONFLICT'));
    assert.equal(d, rb + 3);
    assert.equal((await store.get('/u/a'))?.value.toString(), 'a1');
    assert.equal((await store.get('/u/b'))?.value.toString(), 'b0');
  } finally {
    await store.close();
    await cleanup();
  }
});
