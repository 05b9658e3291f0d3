import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createCipheriv, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { KmsV2Transformer } from '../../src/transform/kmsv2/transformer.js';
import { DekSeedStateHolder } from '../../src/transform/kmsv2/state.js';
import { decodeEncryptedObject, encodeEncryptedObject } from '../../src/transform/kmsv2/encrypted-object.js';
import { AesGcm, ExtendedNonceGcm } from '../../src/crypto/index.js';
import { KmsV2Probe } from '../../src/kms/v2-probe.js';
import { FakeKmsV2 } from '../helpers/fake-kms.js';

const vectors = JSON.parse(readFileSync(new URL('../fixtures/spec/vectors.json', import.meta.url), 'utf8'));
const enc = (s: string): Buffer => Buffer.from(s, 'utf8');
const NO_CACHE = { positiveMs: 0, negativeMs: 0 };

class Clock {
  t = Date.parse('2026-01-01T00:00:00Z');
  now = (): number => this.t;
}

async function setup(fake = new FakeKmsV2(), clock = new Clock()) {
  const state = new DekSeedStateHolder({ now: clock.now });
  const probe = new KmsV2Probe('prov', fake, state, NO_CACHE, clock.now);
  await probe.check();
  const t = new KmsV2Transformer({ providerName: 'prov', service: fake, state, now: clock.now });
  return { fake, clock, state, probe, t };
}

test('k8s HKDF extended-nonce and GCM raw vectors decode', () => {
  const h = vectors.k8s.hkdf_xnonce_raw_legacy;
  assert.equal(new ExtendedNonceGcm(Buffer.from(h.seedHex, 'hex')).open(Buffer.from(h.ciphertextHex, 'hex'), enc(h.aad)).toString(), h.plaintext);
  const g = vectors.k8s.aesgcm_raw_legacy;
  assert.equal(new AesGcm(enc(g.keyAscii)).open(Buffer.from(g.ciphertextHex, 'hex'), enc(g.aad)).toString(), g.plaintext);
  assert.throws(() => new ExtendedNonceGcm(Buffer.alloc(31)), { message: 'invalid seed length 31 used for key generation' });
});

test('kms v2 round trip writes type 1 EncryptedObjects with the state key_id; 1,000 writes make one Encrypt call', async () => {
  const { fake, t } = await setup();
  assert.deepEqual(fake.calls, { status: 1, encrypt: 1, decrypt: 0 });
  let stored: Buffer | undefined;
  for (let i = 0; i < 1000; i++) stored = await t.toStorage(enc(`v${i}`), enc(`/registry/secrets/ns/s${i}`));
  assert.equal(fake.calls.encrypt, 1);
  const o = decodeEncryptedObject(stored as Buffer);
  assert.equal(o.keyID, 'key-1');
  assert.equal(o.encryptedDEKSourceType, 1);
  assert.equal(o.encryptedData.length, 32 + 12 + 4 + 16);
  const out = await t.fromStorage(stored as Buffer, enc('/registry/secrets/ns/s999'));
  assert.equal(out.plaintext.toString(), 'v999');
  assert.equal(out.stale, false);
  assert.match(out.origin.keyIdHash ?? '', /^sha256:[0-9a-f]{64}$/);
  assert.equal(fake.calls.decrypt, 0, 'the write seed is in the decrypt cache');
});

test('kms v2 reads through the decrypt cache: one Decrypt per DEK seed, uid is a fresh v4 UUID', async () => {
  const { fake, t } = await setup();
  const values = await Promise.all(Array.from({ length: 20 }, (_, i) => t.toStorage(enc(`v${i}`), enc(`/k/${i}`))));
  const state2 = new DekSeedStateHolder();
  const probe2 = new KmsV2Probe('prov', fake, state2, NO_CACHE, Date.now);
  await probe2.check();
  const reader = new KmsV2Transformer({ providerName: 'prov', service: fake, state: state2 });
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 20; i++) assert.equal((await reader.fromStorage(values[i] as Buffer, enc(`/k/${i}`))).plaintext.toString(), `v${i}`);
  }
  assert.equal(fake.calls.decrypt, 1);
  assert.equal(new Set(fake.uids).size, fake.uids.length);
  for (const uid of fake.uids) assert.match(uid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('kms v2 rotation: a new Status key_id makes a new seed; old values read and are stale', async () => {
  const { fake, probe, t } = await setup();
  const old = await t.toStorage(enc('old'), enc('/k'));
  fake.keyId = 'key-2';
  await probe.check();
  assert.equal(fake.calls.encrypt, 2);
  const fresh = await t.toStorage(enc('new'), enc('/k'));
  assert.equal(decodeEncryptedObject(fresh).keyID, 'key-2');
  const a = await t.fromStorage(old, enc('/k'));
  assert.deepEqual([a.plaintext.toString(), a.stale], ['old', true]);
  const b = await t.fromStorage(fresh, enc('/k'));
  assert.deepEqual([b.plaintext.toString(), b.stale], ['new', false]);
  await probe.check();
  assert.equal(fake.calls.encrypt, 2, 'unchanged key_id: no new seed');
});

test('kms v2 reads type 0 objects (1.27 counter nonce, 1.25 random nonce); stale against the type 1 writer', async () => {
  const fake = new FakeKmsV2();
  const { t } = await setup(fake);
  const typeZero = async (nonce: Buffer, text: string, aad: string): Promise<Buffer> => {
    const dek = randomBytes(32);
    const c = createCipheriv('aes-256-gcm', dek, nonce);
    c.setAAD(enc(aad));
    const data = Buffer.concat([nonce, c.update(text), c.final(), c.getAuthTag()]);
    const edek = (await fake.encrypt('u', dek)).ciphertext;
    const value = encodeEncryptedObject({ encryptedData: data, keyID: 'key-1', encryptedDEKSource: edek, annotations: {}, encryptedDEKSourceType: 0 });
    assert.ok(!value.includes(Buffer.of(0x28, 0x00)), 'type 0 is omitted on the wire');
    return value;
  };
  // 1.27: nonce = 4 random bytes ‖ u64le counter, first counter 1 000 000 001.
  const counterNonce = Buffer.concat([randomBytes(4), Buffer.from('01ca9a3b00000000', 'hex')]);
  const v127 = await typeZero(counterNonce, 'from 1.27', '/registry/secrets/a/b');
  const out = await t.fromStorage(v127, enc('/registry/secrets/a/b'));
  assert.deepEqual([out.plaintext.toString(), out.stale], ['from 1.27', true]);
  const v125 = await typeZero(randomBytes(12), 'alpha', '/x');
  assert.equal((await t.fromStorage(v125, enc('/x'))).plaintext.toString(), 'alpha');
  await assert.rejects(t.fromStorage(v125, enc('/y')), { message: 'cipher: message authentication failed' });
});

test('kms v2 binds the storage key and detects any tampering (fast-check)', async () => {
  const { t } = await setup();
  await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), async (plain, k1, k2) => {
    const stored = await t.toStorage(plain, enc(k1));
    assert.ok((await t.fromStorage(stored, enc(k1))).plaintext.equals(Buffer.from(plain)));
    if (k1 !== k2) await assert.rejects(t.fromStorage(stored, enc(k2)));
  }), { numRuns: 100 });
  const stored = await t.toStorage(enc('tamper me'), enc('/k'));
  await fc.assert(fc.asyncProperty(fc.nat(stored.length - 1), fc.integer({ min: 1, max: 255 }), async (i, x) => {
    const bad = Buffer.from(stored);
    bad[i] = (bad[i] as number) ^ x;
    await assert.rejects(t.fromStorage(bad, enc('/k')));
  }), { numRuns: 300 });
  for (let n = 0; n < stored.length; n++) await assert.rejects(t.fromStorage(stored.subarray(0, n), enc('/k')));
});

test('kms v2 write expiry: writes fail 3 minutes after the last good Status, reads go on', async () => {
  const { fake, clock, probe, t } = await setup();
  const stored = await t.toStorage(enc('x'), enc('/k'));
  fake.fail = new Error('rpc error: code = Unavailable desc = down');
  clock.t += 2 * 60_000;
  await assert.rejects(probe.check(), /failed to perform status section of the healthz check for KMS Provider prov, error: rpc error: code = Unavailable desc = down/);
  await t.toStorage(enc('still ok'), enc('/k'));
  const expiredAt = clock.t - 2 * 60_000 + 3 * 60_000;
  clock.t += 61_000;
  await assert.rejects(t.toStorage(enc('x'), enc('/k')), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'KMS_WRITE_KEY_EXPIRED');
    assert.match(err.message, new RegExp(`^kms v2 provider "prov" cannot encrypt: encryptedDEKSource with keyID hash "sha256:[0-9a-f]{64}" expired at ${new Date(expiredAt).toISOString().replace('.000Z', 'Z')} \\(current time is ${new Date(clock.t).toISOString().replace('.000Z', 'Z')}\\); the last Status call failed: rpc error: code = Unavailable desc = down$`));
    return true;
  });
  fake.fail = undefined;
  assert.equal((await t.fromStorage(stored, enc('/k'))).plaintext.toString(), 'x');
  await probe.check();
  await t.toStorage(enc('again'), enc('/k'));
});

test('kms v2 before the first good Status: reads and writes fail clearly', async () => {
  const fake = new FakeKmsV2();
  const { t: writer } = await setup(fake);
  const stored = await writer.toStorage(enc('x'), enc('/k'));
  fake.fail = new Error('plugin not there');
  const state = new DekSeedStateHolder();
  const probe = new KmsV2Probe('prov', fake, state, NO_CACHE, Date.now);
  await assert.rejects(probe.check());
  fake.fail = undefined;
  const t = new KmsV2Transformer({ providerName: 'prov', service: fake, state });
  await assert.rejects(t.toStorage(enc('x'), enc('/k')), (err: Error & { code?: string }) =>
    err.code === 'KMS_NOT_READY' && err.message.startsWith('kms v2 provider "prov" cannot encrypt: got unexpected nil transformer'));
  await assert.rejects(t.fromStorage(stored, enc('/k')), (err: Error & { code?: string }) =>
    err.code === 'KMS_NOT_READY' && err.message.startsWith('got unexpected nil transformer'));
});

test('kms v2 Status validation texts (healthz, version, key_id) and rotation refusals keep the old seed', async () => {
  const { fake, probe, t } = await setup();
  const keyHash = (await t.fromStorage(await t.toStorage(enc('a'), enc('/k')), enc('/k'))).origin.keyIdHash;
  fake.healthz = 'err';
  await assert.rejects(probe.check(), { message: 'kms v2 provider "prov": kmsv2 Provider prov is not healthy, error: got unexpected healthz status: err' });
  fake.healthz = 'ok';
  fake.version = 'v2beta1';
  await assert.rejects(probe.check(), { message: 'kms v2 provider "prov": kmsv2 Provider prov is not healthy, error: KMSv2 API version should not change after the initial status response version v2, got v2beta1' });
  fake.version = 'v1';
  fake.healthz = 'bad';
  await assert.rejects(probe.check(), { message: 'kms v2 provider "prov": kmsv2 Provider prov is not healthy, error: [got unexpected healthz status: bad, expected KMSv2 API version v2, got v1]' });
  fake.version = 'v2';
  fake.healthz = 'ok';
  fake.keyId = '';
  await assert.rejects(probe.check(), { message: 'kms v2 provider "prov": kmsv2 Provider prov is not healthy, error: got invalid KMSv2 KeyID hash "": keyID is empty' });
  fake.keyId = 'k'.repeat(1025);
  await assert.rejects(probe.check(), /got invalid KMSv2 KeyID hash "sha256:[0-9a-f]{64}": keyID is 1025 bytes, which exceeds the max size of 1024$/);

  const refusals: Array<[Partial<typeof fake.encryptOverride>, RegExp]> = [
    [{ ciphertext: Buffer.alloc(1025) }, /errGen=failed to validate encrypted DEK source: encrypted DEK source is 1025 bytes, which exceeds the max size of 1024,/],
    [{ ciphertext: Buffer.alloc(0) }, /errGen=failed to validate encrypted DEK source: encrypted DEK source is empty,/],
    [{ keyId: 'x'.repeat(1025) }, /errGen=failed to validate key id: keyID is 1025 bytes, which exceeds the max size of 1024, statusKeyIDHash="sha256:[0-9a-f]{64}", encryptKeyIDHash="",/],
    [{ keyId: 'some-other-key' }, /errGen=<nil>, statusKeyIDHash="sha256:[0-9a-f]{64}", encryptKeyIDHash="sha256:[0-9a-f]{64}", stateKeyIDHash="sha256:[0-9a-f]{64}", expirationTimestamp=2026-01-01T00:03:00Z$/],
    [{ annotations: { Bad_Key: enc('v') } }, /errGen=failed to validate annotations: annotations: Invalid value: "Bad_Key": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '\.', and must start and end with an alphanumeric character \(e\.g\. 'example\.com', regex used for validation is '\[a-z0-9\]\(\[-a-z0-9\]\*\[a-z0-9\]\)\?\(\\\.\[a-z0-9\]\(\[-a-z0-9\]\*\[a-z0-9\]\)\?\)\*'\),/],
    [{ annotations: { 'a.example.com': Buffer.alloc(32 * 1024) } }, /errGen=failed to validate annotations: total size of annotations is 32781, which exceeds the max size of 32768,/],
  ];
  for (const [override, expected] of refusals) {
    fake.keyId = `rot-${Math.random()}`;
    fake.encryptOverride = override;
    await assert.rejects(probe.check(), (err: Error) => {
      assert.match(err.message, /^kms v2 provider "prov": kmsv2 Provider prov is not healthy, error: failed to rotate DEK uid="[0-9a-f-]{36}", useSeed=true, errState=<nil>, /);
      assert.match(err.message, expected);
      assert.ok(!err.message.includes(fake.keyId), 'key_id only as a hash');
      return true;
    });
    // The old seed (key-1) keeps writing.
    const stored = await t.toStorage(enc('b'), enc('/k'));
    assert.equal(decodeEncryptedObject(stored).keyID, 'key-1');
  }
  fake.encryptOverride = undefined;
  fake.keyId = 'key-9';
  fake.annotations = { 'kms.example.com': enc('v1'), 'a.b': enc('') };
  await probe.check();
  const stored = await t.toStorage(enc('c'), enc('/k'));
  const o = decodeEncryptedObject(stored);
  assert.equal(o.keyID, 'key-9');
  assert.deepEqual(Object.keys(o.annotations).sort(), ['a.b', 'kms.example.com']);
  assert.notEqual(keyHash, (await t.fromStorage(stored, enc('/k'))).origin.keyIdHash);
});

test('kms v2 read errors: plugin Decrypt failure is wrapped; a bad DEK size or short seed from the plugin fails cleanly', async () => {
  const fake = new FakeKmsV2();
  const { t: writer } = await setup(fake);
  const stored = await writer.toStorage(enc('x'), enc('/k'));
  const { t: reader } = await setup(fake);
  fake.fail = new Error('rpc error: code = Internal desc = boom');
  await assert.rejects(reader.fromStorage(stored, enc('/k')), { message: 'kms v2 provider "prov": failed to decrypt DEK, error: rpc error: code = Internal desc = boom' });
  fake.fail = undefined;
  const o = decodeEncryptedObject(stored);
  const shortSeed = encodeEncryptedObject({ ...o, encryptedDEKSource: (await fake.encrypt('u', Buffer.alloc(16))).ciphertext });
  await assert.rejects(reader.fromStorage(shortSeed, enc('/k')), { message: 'invalid seed length 16 used for key generation' });
  const badDek = encodeEncryptedObject({ ...o, encryptedDEKSourceType: 0, encryptedDEKSource: (await fake.encrypt('u', Buffer.alloc(5))).ciphertext });
  await assert.rejects(reader.fromStorage(badDek, enc('/k')), { message: 'crypto/aes: invalid key size 5' });
  await assert.rejects(reader.fromStorage(Buffer.of(0x0a, 0x01, 0x00), enc('/k')), { message: 'failed to validate encrypted DEK source: encrypted DEK source is empty' });
});

test('kms v2 concurrent cold reads of one seed share one Decrypt call; a failed call is not cached', async () => {
  const fake = new FakeKmsV2();
  const { t: writer } = await setup(fake);
  const values = await Promise.all(Array.from({ length: 50 }, (_, i) => writer.toStorage(enc(`v${i}`), enc(`/k/${i}`))));
  const { t: reader } = await setup(fake);
  fake.fail = new Error('flaky');
  await assert.rejects(Promise.all(values.map((v, i) => reader.fromStorage(v, enc(`/k/${i}`)))), /failed to decrypt DEK, error: flaky/);
  assert.equal(fake.calls.decrypt, 1);
  fake.fail = undefined;
  const outs = await Promise.all(values.map((v, i) => reader.fromStorage(v, enc(`/k/${i}`))));
  outs.forEach((o, i) => assert.equal(o.plaintext.toString(), `v${i}`));
  assert.equal(fake.calls.decrypt, 2);
});

test('kms v2 writes sealed straight into the envelope are the canonical EncryptedObject encoding, with and without a header', async () => {
  const { fake, probe, t } = await setup();
  fake.keyId = 'key-2';
  fake.annotations = { 'kms.example.com': enc('v1'), 'a.b': enc('') };
  await probe.check();
  for (const size of [0, 1, 100, 200, 20_000]) {
    const plain = randomBytes(size);
    const stored = await t.toStorage(plain, enc('/k/a'));
    // Re-encoding what was decoded gives the same bytes: field order, lengths and trailer are exact.
    assert.deepEqual(encodeEncryptedObject(decodeEncryptedObject(stored)), stored);
    assert.equal(decodeEncryptedObject(stored).encryptedData.length, 32 + 12 + size + 16);
    const framed = await t.toStorageWithHeader(enc('k8s:enc:kms:v2:prov:'), plain, enc('/k/b'));
    assert.deepEqual(framed.subarray(0, 20), enc('k8s:enc:kms:v2:prov:'));
    assert.deepEqual(encodeEncryptedObject(decodeEncryptedObject(framed.subarray(20))), framed.subarray(20));
    assert.deepEqual((await t.fromStorage(framed.subarray(20), enc('/k/b'))).plaintext, plain);
    // Read through a second transformer (cold caches: the Decrypt path, not the write state).
    const state2 = new DekSeedStateHolder();
    await new KmsV2Probe('prov', fake, state2, NO_CACHE, Date.now).check();
    const cold = new KmsV2Transformer({ providerName: 'prov', service: fake, state: state2 });
    assert.deepEqual((await cold.fromStorage(stored, enc('/k/a'))).plaintext, plain);
    await assert.rejects(cold.fromStorage(stored, enc('/k/other')), /message authentication failed/);
  }
});
