// The embedded SQLite store: the shared conformance suite, plus what only a file-backed store has
// (permissions, reopening, read-only access from a second connection, automatic compaction).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { StoreError } from '../../src/storage/errors.js';
import { openSqliteStore, STORE_FILE_NAME } from '../../src/storage/sqlite.js';
import { collect, storeConformance, waitFor } from './conformance.js';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'atrest-sqlite-'));
}

storeConformance('sqlite', async () => {
  const dir = tempDir();
  const store = openSqliteStore(join(dir, STORE_FILE_NAME), { compactIntervalMs: 0 });
  return {
    store,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}, 200);

describe('sqlite store file', () => {
  it('creates the directory 0700 and the database 0600, in WAL mode', async () => {
    const dir = tempDir();
    try {
      const dataDir = join(dir, 'data', 'nested');
      const file = join(dataDir, STORE_FILE_NAME);
      const store = openSqliteStore(file, { compactIntervalMs: 0 });
      await store.create('/k', Buffer.from('v'));
      assert.equal(statSync(dataDir).mode & 0o777, 0o700);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(statSync(file + '-wal').mode & 0o777, 0o600, 'the WAL file is no wider than the database');
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps data and revisions across reopening; revisions never go back after deletes and compaction', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, STORE_FILE_NAME);
      let store = openSqliteStore(file, { compactIntervalMs: 0 });
      const r1 = await store.create('/a', Buffer.from('1'));
      await store.create('/b', Buffer.from('2'));
      await store.delete('/b');
      const last = await store.revision();
      await store.compact(last);
      await store.close();
      store = openSqliteStore(file, { compactIntervalMs: 0 });
      assert.equal(await store.revision(), last, 'the deleted row at the top does not lower the revision');
      assert.equal(store.compactRevision(), last);
      assert.deepEqual(await store.get('/a'), { key: '/a', value: Buffer.from('1'), modRevision: r1, createRevision: r1 });
      const next = await store.create('/c', Buffer.from('3'));
      assert.equal(next, last + 1);
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a read-only second connection sees the writer\'s data while it runs and cannot write', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, STORE_FILE_NAME);
      const writer = openSqliteStore(file, { compactIntervalMs: 0 });
      const rev = await writer.create('/registry/secrets/default/s', Buffer.from('k8s:enc:kms:v2:x:\x00\x01'));
      const reader = openSqliteStore(file, { readonly: true });
      assert.deepEqual((await reader.get('/registry/secrets/default/s'))?.value, Buffer.from('k8s:enc:kms:v2:x:\x00\x01'));
      await writer.update('/registry/secrets/default/s', Buffer.from('v2'), rev);
      assert.deepEqual((await reader.list('/registry/')).items.map((kv) => kv.value.toString()), ['v2']);
      await assert.rejects(reader.create('/x', Buffer.from('y')), (err: unknown) => err instanceof StoreError && err.code === 'UNAVAILABLE');
      await reader.close();
      await writer.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('read-only open of a missing file fails with UNAVAILABLE naming the file', () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'nope.db');
      assert.throws(() => openSqliteStore(file, { readonly: true }), (err: unknown) => err instanceof StoreError && err.code === 'UNAVAILABLE' && err.message.includes(file));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('automatic compaction keeps the configured history', async () => {
    const dir = tempDir();
    try {
      const store = openSqliteStore(join(dir, STORE_FILE_NAME), { compactIntervalMs: 20, compactKeepRevisions: 5 });
      let rev = await store.create('/k', Buffer.from('0'));
      for (let i = 1; i < 30; i++) rev = await store.update('/k', Buffer.from(String(i)), rev);
      await waitFor(() => store.compactRevision() >= rev - 5, 'the automatic compaction');
      assert.deepEqual((await store.get('/k'))?.value, Buffer.from('29'));
      const c = collect(store, '/', 1);
      await waitFor(() => c.errors.length > 0, 'COMPACTED');
      assert.equal((c.errors[0] as StoreError).code, 'COMPACTED');
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a watch catching up on a long history delivers it in batches, in order', async () => {
    const dir = tempDir();
    try {
      const store = openSqliteStore(join(dir, STORE_FILE_NAME), { compactIntervalMs: 0, watchBatchSize: 7 });
      const revs: number[] = [];
      for (let i = 0; i < 50; i++) revs.push(await store.create(`/p/${String(i).padStart(3, '0')}`, Buffer.from(String(i))));
      const c = collect(store, '/p/', 0);
      // Writes while the catch-up is under way join the end of the stream.
      revs.push(await store.create('/p/late', Buffer.from('late')));
      await waitFor(() => c.events.length >= 51, 'every event');
      assert.deepEqual(c.events.map((e) => (e.type === 'put' ? e.kv.modRevision : e.modRevision)), revs);
      c.close();
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('operations on a closed store fail with UNAVAILABLE', async () => {
    const dir = tempDir();
    try {
      const store = openSqliteStore(join(dir, STORE_FILE_NAME), { compactIntervalMs: 0 });
      await store.close();
      await assert.rejects(store.get('/k'), (err: unknown) => err instanceof StoreError && err.code === 'UNAVAILABLE');
      await assert.rejects(store.ping(), (err: unknown) => err instanceof StoreError && err.code === 'UNAVAILABLE');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
