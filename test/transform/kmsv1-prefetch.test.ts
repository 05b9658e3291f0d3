// kms v1 write-ahead DEKs (`prefetch`): the plugin call leaves the write's critical path under a
// steady write load, while every write still has its own fresh DEK and its own Encrypt call (no DEK
// encrypts two values), no wrap older than PREFETCH_MAX_AGE_MS is used, slow writers waste no calls,
// and the stored bytes read back through a transformer without the pool (kube-apiserver's layout).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PREFETCH_MAX_AGE_MS, KmsV1Transformer } from '../../src/transform/kmsv1.js';
import { FakeKmsV1 } from '../helpers/fake-kms.js';

const enc = (s: string): Buffer => Buffer.from(s, 'utf8');
const edekOf = (stored: Buffer): string => stored.subarray(2, 2 + stored.readUInt16BE(0)).toString('base64');

/** A FakeKmsV1 whose Encrypt answers after a tick of the event loop, like a socket would. */
class SlowKms extends FakeKmsV1 {
  override async encrypt(plain: Uint8Array): Promise<Uint8Array> {
    await new Promise((r) => setImmediate(r));
    return super.encrypt(plain);
  }
}

test('under a steady load writes take prefetched DEKs: one fresh DEK and one Encrypt per write, never reused', async () => {
  const service = new SlowKms();
  const t = new KmsV1Transformer({ providerName: 'p', service, prefetch: 16 });
  const plain = new KmsV1Transformer({ providerName: 'p', service }); // reads as kube-apiserver would
  const edeks = new Set<string>();
  const stored: Array<{ key: string; value: Buffer }> = [];
  for (let round = 0; round < 25; round++) {
    await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const key = `/registry/secrets/default/s-${round}-${i}`;
      const value = await t.toStorage(enc(`value ${key}`), enc(key));
      edeks.add(edekOf(value));
      stored.push({ key, value });
    }));
  }
  const writes = 25 * 8;
  assert.equal(edeks.size, writes, 'every write has its own DEK');
  assert.ok(service.calls.encrypt >= writes, 'at least one Encrypt per write');
  assert.ok(service.calls.encrypt <= writes + 16, `at most the pool size wasted: ${service.calls.encrypt} calls for ${writes} writes`);
  assert.ok(t.prefetchState().target > 0, 'the pool grew under load');
  // With wraps ready, a write completes within microtasks: it waits for no plugin call.
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.ok(t.prefetchState().ready > 0);
  let done = false;
  const p = t.toStorage(enc('fast'), enc('/registry/secrets/default/fast')).then((v) => { done = true; return v; });
  for (let i = 0; i < 20 && !done; i++) await null;
  assert.ok(done, 'a write with a ready wrap did not wait for the plugin');
  edeks.add(edekOf(await p));
  assert.equal(edeks.size, writes + 1);
  for (const { key, value } of stored.slice(-20)) {
    assert.equal((await plain.fromStorage(value, enc(key))).plaintext.toString(), `value ${key}`);
  }
});

test('a prefetched wrap older than the age limit is never used; slow writers cost exactly one call per write', async () => {
  let clock = 0;
  const service = new SlowKms();
  const t = new KmsV1Transformer({ providerName: 'p', service, prefetch: 4, now: () => clock });
  // A burst: misses in quick succession grow the pool.
  for (let i = 0; i < 10; i++) await t.toStorage(enc('v'), enc(`/k/${i}`));
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.ok(t.prefetchState().ready > 0, `wraps are ready: ${JSON.stringify(t.prefetchState())}`);
  const ready = t.prefetchState().ready;
  const calls = service.calls.encrypt;
  clock += PREFETCH_MAX_AGE_MS + 1;
  await t.toStorage(enc('v'), enc('/k/late'));
  assert.equal(service.calls.encrypt, calls + 1, 'the expired wraps were dropped and the write called the plugin itself');
  assert.equal(t.prefetchState().ready, 0, `all ${ready} expired wraps dropped`);
  // One write per age limit: the pool stays empty, no call is wasted.
  const before = service.calls.encrypt;
  for (let i = 0; i < 5; i++) {
    clock += PREFETCH_MAX_AGE_MS + 1;
    await t.toStorage(enc('v'), enc(`/slow/${i}`));
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(service.calls.encrypt - before, 5, 'slow writes: one Encrypt each');
  assert.deepEqual(t.prefetchState(), { ready: 0, inFlight: 0, target: 0 });
});

test('a failing plugin fails the write naming the provider, and stops the prefetching', async () => {
  const service = new SlowKms();
  const t = new KmsV1Transformer({ providerName: 'vault', service, prefetch: 8 });
  for (let i = 0; i < 6; i++) await t.toStorage(enc('v'), enc(`/k/${i}`));
  service.fail = new Error('plugin down');
  // Wraps made before the failure may still serve a few writes (they are fresh and valid); then writes fail.
  let failed = 0;
  for (let i = 0; i < 20; i++) {
    try {
      await t.toStorage(enc('v'), enc(`/d/${i}`));
    } catch (err) {
      failed++;
      assert.match((err as Error).message, /kms v1 provider "vault" cannot encrypt: plugin down/);
    }
  }
  assert.ok(failed >= 20 - 8, `writes fail once the ready wraps are used: ${failed}`);
  assert.equal(t.prefetchState().inFlight + t.prefetchState().ready, 0);
});
