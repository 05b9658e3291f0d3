// Prefix-chain semantics (format.md §0): write with the first entry, read by walking matching
// prefixes; identity errors skipped, other errors collected and the walk continued; stale at both
// levels; default error texts; the storage key named at the resource level only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AesCbcTransformer } from '../../src/transform/aescbc.js';
import { AesGcmTransformer } from '../../src/transform/aesgcm.js';
import { SecretboxTransformer } from '../../src/transform/secretbox.js';
import { IdentityTransformer, ERR_IDENTITY_ENCRYPTED } from '../../src/transform/identity.js';
import { TransformError } from '../../src/transform/errors.js';
import {
  PrefixTransformer, ERR_NO_MATCHING_AES_KEY, ERR_NO_MATCHING_PREFIX, ERR_NO_MATCHING_SECRETBOX_KEY, ERR_NO_MATCHING_TRANSFORMER,
  type PrefixEntry,
} from '../../src/transform/prefix.js';
import type { TransformResult, Transformer } from '../../src/transform/types.js';

const ctx = Buffer.from('/registry/secrets/default/s1');
const text = (s: string) => Buffer.from(s);

function keyList(kind: 'aescbc' | 'aesgcm' | 'secretbox', keys: Array<[string, Buffer]>): PrefixEntry {
  const make = (k: Buffer, n: string): Transformer =>
    kind === 'aescbc' ? new AesCbcTransformer(k, n) : kind === 'aesgcm' ? new AesGcmTransformer(k, n) : new SecretboxTransformer(k, n);
  return {
    prefix: text(`k8s:enc:${kind}:v1:`),
    transformer: new PrefixTransformer(keys.map(([n, k]) => ({ prefix: text(`${n}:`), transformer: make(k, n) })), {
      defaultError: kind === 'secretbox' ? ERR_NO_MATCHING_SECRETBOX_KEY : ERR_NO_MATCHING_AES_KEY,
      defaultErrorCode: 'NO_MATCHING_KEY',
    }),
  };
}

function resourceChain(entries: PrefixEntry[]): PrefixTransformer {
  return new PrefixTransformer(entries, { defaultError: ERR_NO_MATCHING_PREFIX, nameStorageKey: true });
}

const identity = (): PrefixEntry => ({ prefix: Buffer.alloc(0), transformer: new IdentityTransformer() });

async function rejectsWith(p: Promise<unknown>, check: (err: TransformError) => void): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof TransformError, `expected TransformError, got ${String(err)}`);
    check(err);
    return true;
  });
}

test('writes with the first provider and its first key; reads back fresh', async () => {
  const k1 = randomBytes(32);
  const chain = resourceChain([keyList('aesgcm', [['first', k1], ['second', randomBytes(32)]]), identity()]);
  const stored = await chain.toStorage(text('hello'), ctx);
  assert.equal(stored.subarray(0, 24).toString(), 'k8s:enc:aesgcm:v1:first:');
  const r = await chain.fromStorage(stored, ctx);
  assert.equal(r.plaintext.toString(), 'hello');
  assert.equal(r.stale, false);
  assert.deepEqual(r.origin, { provider: 'aesgcm', name: 'first' });
});

test('stale at the key level: value written with the second key of the provider', async () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(16);
  const old = resourceChain([keyList('aescbc', [['k2', k2]])]);
  const now = resourceChain([keyList('aescbc', [['k1', k1], ['k2', k2]])]);
  const r = await now.fromStorage(await old.toStorage(text('v'), ctx), ctx);
  assert.equal(r.plaintext.toString(), 'v');
  assert.equal(r.stale, true);
  assert.deepEqual(r.origin, { provider: 'aescbc', name: 'k2' });
});

test('stale at the provider level: identity data under an encrypting first provider, and encrypted data under identity first', async () => {
  const sb = keyList('secretbox', [['k', randomBytes(32)]]);
  const chain = resourceChain([sb, identity()]);
  const plain = await chain.fromStorage(text('{"kind":"Secret"}'), ctx);
  assert.equal(plain.stale, true);
  assert.deepEqual(plain.origin, { provider: 'identity' });

  const decrypting = resourceChain([identity(), sb]);
  const written = await chain.toStorage(text('secret'), ctx);
  const r = await decrypting.fromStorage(written, ctx); // identity refuses k8s:enc:, silently skipped
  assert.equal(r.plaintext.toString(), 'secret');
  assert.equal(r.stale, true);
  assert.deepEqual(await decrypting.toStorage(text('x'), ctx), text('x'), 'identity first writes plaintext');
});

test('falls through two aescbc providers with different keys of the same name', async () => {
  const a = keyList('aescbc', [['key1', randomBytes(32)]]);
  const b = keyList('aescbc', [['key1', randomBytes(32)]]);
  const writtenByB = await resourceChain([b]).toStorage(text('payload-of-b'), ctx);
  const chain = resourceChain([a, b]);
  // `a` matches the prefix, fails (padding or garbage), `b` is tried next. CBC without MAC can, rarely,
  // "succeed" with garbage under the wrong key; repeat with fresh IVs until a failing case shows.
  let sawFallThrough = false;
  for (let i = 0; i < 20 && !sawFallThrough; i++) {
    const v = await resourceChain([b]).toStorage(text('payload-of-b'), ctx);
    const r = await chain.fromStorage(v, ctx);
    if (r.plaintext.toString() === 'payload-of-b') {
      assert.equal(r.stale, true);
      sawFallThrough = true;
    }
  }
  assert.ok(sawFallThrough);
  assert.ok(writtenByB.length > 0);
});

test('aggregates the errors of every matching provider, deduplicated, and names the storage key', async () => {
  const g1 = keyList('aesgcm', [['k', randomBytes(32)]]);
  const g2 = keyList('aesgcm', [['k', randomBytes(32)]]);
  const g3 = keyList('aesgcm', [['k', randomBytes(32)]]);
  const stored = await resourceChain([g3]).toStorage(text('x'), ctx);
  await rejectsWith(resourceChain([g1, g2]).fromStorage(stored, ctx), (err) => {
    assert.equal(err.reason, 'cipher: message authentication failed', 'two equal messages print once, bare');
    assert.equal(err.errors.length, 2);
    assert.equal(err.code, 'DECRYPT_FAILED');
    assert.equal(err.storageKey, '/registry/secrets/default/s1');
    assert.match(err.message, /"\/registry\/secrets\/default\/s1"/);
  });
  const cbc = keyList('aescbc', [['k', randomBytes(32)]]);
  const sb = keyList('secretbox', [['k', randomBytes(32)]]);
  const chain = resourceChain([g1, cbc, sb]);
  // a gcm value whose key name no provider knows, and a short secretbox value: different texts
  const unknownKey = Buffer.concat([text('k8s:enc:aesgcm:v1:other:'), randomBytes(40)]);
  await rejectsWith(chain.fromStorage(unknownKey, ctx), (err) => {
    assert.equal(err.reason, ERR_NO_MATCHING_AES_KEY);
    assert.equal(err.code, 'NO_MATCHING_KEY');
  });
  const twoKinds = resourceChain([keyList('aescbc', [['k', randomBytes(32)]]), keyList('aescbc', [['j', randomBytes(32)]])]);
  const shortCbc = Buffer.concat([text('k8s:enc:aescbc:v1:k:'), randomBytes(5)]);
  await rejectsWith(twoKinds.fromStorage(shortCbc, ctx), (err) => {
    assert.equal(err.reason, `[the stored data was shorter than the required size, ${ERR_NO_MATCHING_AES_KEY}]`);
    assert.equal(err.errors.length, 2);
  });
});

test('default texts: no prefix matched, no key matched, secretbox key list, generic', async () => {
  const chain = resourceChain([keyList('aesgcm', [['k', randomBytes(16)]])]);
  await rejectsWith(chain.fromStorage(text('k8s:enc:other:v1:x'), ctx), (err) => {
    assert.equal(err.reason, ERR_NO_MATCHING_PREFIX);
    assert.equal(err.code, 'NO_MATCHING_PREFIX');
    assert.equal(err.message, `cannot decrypt the value of storage key "/registry/secrets/default/s1": ${ERR_NO_MATCHING_PREFIX}`);
  });
  const sb = keyList('secretbox', [['k', randomBytes(32)]]);
  await rejectsWith(sb.transformer.fromStorage(text('nope:abc'), ctx), (err) => {
    assert.equal(err.message, ERR_NO_MATCHING_SECRETBOX_KEY, 'key lists do not name the storage key');
    assert.equal(err.storageKey, undefined);
  });
  const generic = new PrefixTransformer([{ prefix: text('p:'), transformer: new IdentityTransformer() }]);
  await rejectsWith(generic.fromStorage(text('q:'), ctx), (err) => assert.equal(err.message, ERR_NO_MATCHING_TRANSFORMER));
  // only identity configured: encrypted data is skipped by identity, leaving "no matching prefix"
  await rejectsWith(resourceChain([identity()]).fromStorage(text('k8s:enc:aescbc:v1:k:xxxx'), ctx),
    (err) => assert.equal(err.reason, ERR_NO_MATCHING_PREFIX));
});

test('identity alone refuses k8s:enc: values and passes anything else through', async () => {
  const id = new IdentityTransformer({ nameStorageKey: true });
  await rejectsWith(id.fromStorage(text('k8s:enc:aesgcm:v1:k:abc'), ctx), (err) => {
    assert.equal(err.reason, ERR_IDENTITY_ENCRYPTED);
    assert.equal(err.code, 'UNEXPECTED_ENCRYPTED_DATA');
    assert.equal(err.storageKey, '/registry/secrets/default/s1');
  });
  const r = await id.fromStorage(text('k8s:en'), ctx);
  assert.equal(r.plaintext.toString(), 'k8s:en');
  assert.deepEqual(await id.toStorage(new Uint8Array([1, 2]), ctx), Buffer.from([1, 2]));
});

test('a generic (non header-writing) transformer gets its prefix prepended; write errors name the key and keep the code', async () => {
  const calls: string[] = [];
  const upper: Transformer = {
    async toStorage(p) { calls.push('to'); return Buffer.from(Buffer.from(p).toString().toUpperCase()); },
    async fromStorage(s): Promise<TransformResult> {
      return { plaintext: Buffer.from(Buffer.from(s).toString().toLowerCase()), stale: false, origin: { provider: 'kms', name: 'up', kmsApiVersion: 'v2' } };
    },
  };
  const chain = resourceChain([{ prefix: text('k8s:enc:kms:v2:up:'), transformer: upper }]);
  const stored = await chain.toStorage(text('abc'), ctx);
  assert.equal(stored.toString(), 'k8s:enc:kms:v2:up:ABC');
  assert.equal((await chain.fromStorage(stored, ctx)).plaintext.toString(), 'abc');

  const failing: Transformer = {
    async toStorage() { throw Object.assign(new Error('plugin down'), { code: 'X' }); },
    async fromStorage(): Promise<TransformResult> { throw new Error('never'); },
  };
  await rejectsWith(resourceChain([{ prefix: text('k8s:enc:kms:v2:f:'), transformer: failing }]).toStorage(text('a'), ctx), (err) => {
    assert.equal(err.code, 'ENCRYPT_FAILED');
    assert.equal(err.message, 'cannot encrypt the value of storage key "/registry/secrets/default/s1": plugin down');
  });
});

test('a nested chain writes both prefixes into one buffer behind an outer header', async () => {
  const inner = keyList('secretbox', [['k', randomBytes(32)]]);
  const stored = await (inner.transformer as PrefixTransformer).toStorageWithHeader(text('k8s:enc:secretbox:v1:'), text('zz'), ctx);
  assert.equal(stored.subarray(0, 23).toString(), 'k8s:enc:secretbox:v1:k:');
  assert.equal((await resourceChain([inner]).fromStorage(stored, ctx)).plaintext.toString(), 'zz');
});

test('an empty chain is a programming error', () => {
  assert.throws(() => new PrefixTransformer([]), TypeError);
});
