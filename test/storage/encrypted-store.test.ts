// EncryptedStore over the real embedded store: values at rest are ciphertext bound to their key,
// writes fail closed, and undecryptable values are reported with their key.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EncryptedStore, storeHealthCheck, type DecryptedWatchEvent } from '../../src/storage/encrypted-store.js';
import { StoredValueTransformError, StoreError } from '../../src/storage/errors.js';
import { openSqliteStore, STORE_FILE_NAME } from '../../src/storage/sqlite.js';
import type { Store, WatchEvent } from '../../src/storage/types.js';
import { uniquePrefix, waitFor } from './conformance.js';
import { TestGcmTransformer } from './test-transformer.js';

const SECRET = 'top-secret-plaintext-value';

describe('EncryptedStore', () => {
  let dir: string;
  let raw: Store;
  let transformer: TestGcmTransformer;
  let enc: EncryptedStore;
  const key1 = randomBytes(32);
  const key2 = randomBytes(32);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'atrest-enc-'));
    raw = openSqliteStore(join(dir, STORE_FILE_NAME), { compactIntervalMs: 0 });
    transformer = new TestGcmTransformer([
      { name: 'key1', key: key1 },
      { name: 'key2', key: key2 },
    ]);
    enc = new EncryptedStore(raw, () => transformer);
  });
  after(async () => {
    await raw.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores ciphertext, not plaintext, and reads the plaintext back with its origin', async () => {
    const p = uniquePrefix();
    const rev = await enc.create(p + 's1', Buffer.from(SECRET));
    const stored = await raw.get(p + 's1');
    assert.ok(stored);
    assert.ok(stored.value.subarray(0, 22).equals(Buffer.from('k8s:enc:aesgcm:v1:key1')), 'the provider prefix is stored');
    assert.equal(stored.value.includes(Buffer.from(SECRET)), false, 'no plaintext at rest');
    const got = await enc.get(p + 's1');
    assert.deepEqual(got?.plaintext, Buffer.from(SECRET));
    assert.equal(got?.stale, false);
    assert.deepEqual(got?.origin, { provider: 'aesgcm', name: 'key1' });
    assert.equal(got?.kv.modRevision, rev);
    assert.equal(await enc.get(p + 'missing'), undefined);
  });

  it('binds each value to its key: a value copied to another key fails with an error naming that key', async () => {
    const p = uniquePrefix();
    await enc.create(p + 'a', Buffer.from(SECRET));
    const stored = await raw.get(p + 'a');
    assert.ok(stored);
    await raw.create(p + 'b', stored.value);
    await assert.rejects(enc.get(p + 'b'), (err: unknown) => {
      assert.ok(err instanceof StoredValueTransformError);
      assert.equal(err.code, 'STORAGE_TRANSFORM_FAILED');
      assert.equal(err.key, p + 'b');
      assert.ok(err.message.includes(p + 'b'), err.message);
      assert.equal(err.message.includes(SECRET), false);
      return true;
    });
    assert.deepEqual((await enc.get(p + 'a'))?.plaintext, Buffer.from(SECRET), 'the original still reads');
  });

  it('fails closed: when encryption throws nothing is written', async () => {
    const p = uniquePrefix();
    const r1 = await enc.create(p + 'k', Buffer.from('v1'));
    const before = await raw.revision();
    transformer.failWrites = true;
    try {
      await assert.rejects(enc.create(p + 'new', Buffer.from(SECRET)), (err: unknown) => err instanceof StoredValueTransformError && err.operation === 'write' && err.message.includes(p + 'new'));
      await assert.rejects(enc.update(p + 'k', Buffer.from(SECRET), r1), StoredValueTransformError);
    } finally {
      transformer.failWrites = false;
    }
    assert.equal(await raw.get(p + 'new'), undefined);
    assert.equal((await raw.get(p + 'k'))?.modRevision, r1);
    assert.equal(await raw.revision(), before, 'no revision was used');
  });

  it('update re-encrypts with the current key; a stale read is flagged; conflicts pass through', async () => {
    const p = uniquePrefix();
    // A value written under the older key2, as before a key rotation.
    const old = new TestGcmTransformer([{ name: 'key2', key: key2 }]);
    const r1 = await new EncryptedStore(raw, () => old).create(p + 'rot', Buffer.from('v1'));
    const read = await enc.get(p + 'rot');
    assert.equal(read?.stale, true);
    assert.equal(read?.origin.name, 'key2');
    const r2 = await enc.update(p + 'rot', read.plaintext, r1);
    const now = await enc.get(p + 'rot');
    assert.equal(now?.stale, false);
    assert.equal(now?.origin.name, 'key1');
    const err = await enc.update(p + 'rot', Buffer.from('x'), r1).catch((e: unknown) => e);
    assert.ok(err instanceof StoreError && err.code === 'CONFLICT' && err.current?.modRevision === r2);
    assert.deepEqual((await enc.decrypt(err.current)).plaintext, Buffer.from('v1'), 'the conflict\'s current value decrypts');
  });

  it('list decrypts in key order; an undecryptable value fails the list or is collected in place', async () => {
    const p = uniquePrefix();
    await enc.create(p + 'a', Buffer.from('A'));
    await raw.create(p + 'b', Buffer.from('k8s:enc:aesgcm:v1:key1:garbage-that-will-not-authenticate'));
    await enc.create(p + 'c', Buffer.from('C'));
    await assert.rejects(enc.list(p), (err: unknown) => err instanceof StoredValueTransformError && err.key === p + 'b');
    const res = await enc.list(p, { onError: 'collect' });
    assert.deepEqual(res.items.map((i) => i.kv.key), [p + 'a', p + 'b', p + 'c']);
    assert.deepEqual(res.items[0]?.plaintext, Buffer.from('A'));
    assert.ok(res.items[1]?.error instanceof StoredValueTransformError && res.items[1].error.key === p + 'b');
    assert.deepEqual(res.items[2]?.plaintext, Buffer.from('C'));
    const page = await enc.list(p, { limit: 1, after: p + 'b' });
    assert.deepEqual(page.items.map((i) => i.plaintext.toString()), ['C']);
  });

  it('watch decrypts events in order; a bad value is reported with its key and the watch goes on', async () => {
    const p = uniquePrefix();
    const start = await raw.revision();
    const events: DecryptedWatchEvent[] = [];
    const bad: Array<{ err: StoredValueTransformError; event: WatchEvent }> = [];
    const errors: Error[] = [];
    const w = enc.watch(p, {
      afterRevision: start,
      onEvent: (e) => events.push(e),
      onError: (e) => errors.push(e),
      onDecryptError: (err, event) => bad.push({ err, event }),
    });
    try {
      const r1 = await enc.create(p + 'x', Buffer.from('x1'));
      await raw.create(p + 'bad', Buffer.from('not encrypted'));
      await enc.update(p + 'x', Buffer.from('x2'), r1);
      await enc.delete(p + 'x');
      await waitFor(() => events.length >= 3 && bad.length >= 1, 'the events');
      assert.deepEqual(
        events.map((e) => [e.type, e.key, e.type === 'put' ? e.value.plaintext.toString() : e.prev?.plaintext.toString()]),
        [
          ['put', p + 'x', 'x1'],
          ['put', p + 'x', 'x2'],
          ['delete', p + 'x', 'x2'],
        ],
      );
      assert.equal(bad[0]?.err.key, p + 'bad');
      assert.deepEqual(errors, []);
    } finally {
      w.close();
    }
  });

  it('without onDecryptError a bad value ends the watch through onError', async () => {
    const p = uniquePrefix();
    const start = await raw.revision();
    const errors: Error[] = [];
    const w = enc.watch(p, { afterRevision: start, onEvent: () => undefined, onError: (e) => errors.push(e) });
    try {
      await raw.create(p + 'bad', Buffer.from('plain'));
      await waitFor(() => errors.length >= 1, 'the error');
      assert.ok(errors[0] instanceof StoredValueTransformError && errors[0].key === p + 'bad');
    } finally {
      w.close();
    }
  });

  it('updateMany re-encrypts in bulk; a failed encryption or a conflict affects only its own operation', async () => {
    const p = uniquePrefix();
    const old = new TestGcmTransformer([{ name: 'key2', key: key2 }]);
    const oldStore = new EncryptedStore(raw, () => old);
    const revs: number[] = [];
    for (let i = 0; i < 4; i++) revs.push(await oldStore.create(`${p}${i}`, Buffer.from(`s${i}`)));
    await enc.update(`${p}1`, Buffer.from('moved on'), revs[1] as number);
    // The transformer refuses one key: fail closed for that one only.
    const picky = new EncryptedStore(raw, (key) => (key === `${p}3` ? { ...transformer, toStorage: async () => Promise.reject(new Error('kms down')), fromStorage: transformer.fromStorage.bind(transformer) } : transformer));
    const outcomes = await picky.updateMany(revs.map((rev, i) => ({ key: `${p}${i}`, plaintext: Buffer.from(`s${i}`), expectedRevision: rev })));
    assert.deepEqual(outcomes.map((o) => o.ok), [true, false, true, false]);
    assert.ok(!outcomes[1]?.ok && outcomes[1]?.error instanceof StoreError && outcomes[1].error.code === 'CONFLICT');
    assert.ok(!outcomes[3]?.ok && outcomes[3]?.error instanceof StoredValueTransformError && outcomes[3].error.key === `${p}3`);
    for (const i of [0, 2]) {
      const got = await enc.get(`${p}${i}`);
      assert.equal(got?.stale, false, `${p}${i} was re-encrypted with the current key`);
      assert.deepEqual(got?.plaintext, Buffer.from(`s${i}`));
    }
    assert.equal((await enc.get(`${p}3`))?.stale, true, 'the refused one is untouched');
    assert.equal((await raw.get(`${p}3`))?.modRevision, revs[3]);
  });

  it('storeHealthCheck is named etcd and follows the store', async () => {
    const d = mkdtempSync(join(tmpdir(), 'atrest-enc-hc-'));
    try {
      const s = openSqliteStore(join(d, STORE_FILE_NAME), { compactIntervalMs: 0 });
      const hc = storeHealthCheck(s);
      assert.equal(hc.name, 'etcd');
      await hc.check();
      await s.close();
      await assert.rejects(hc.check(), (err: unknown) => err instanceof StoreError && err.code === 'UNAVAILABLE');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
