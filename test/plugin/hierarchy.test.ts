// The key hierarchy (src/plugin/hierarchy) on its own, fast: its "remote" is the real local-file
// backend (a real KekBackend), behind test/helpers/faulty-kek.ts where an outage, a freeze or a
// refusal must be injected. The same hierarchy against the real PyKMIP server and SoftHSM is in
// hierarchy-kmip.test.ts and hierarchy-pkcs11.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from '../../src/log.js';
import { newRegistry, type Registry } from '../../src/metrics.js';
import { BackendError, type KekBackend } from '../../src/plugin/backend.js';
import { localBackend } from '../../src/plugin/backends/local.js';
import { LocalKekCache } from '../../src/plugin/hierarchy/cache.js';
import { readHierarchySettings, type HierarchySettings } from '../../src/plugin/hierarchy/config.js';
import { CARRIER_ANNOTATION, LOCAL_KEK_ANNOTATION, isEnvelope, parseEnvelope } from '../../src/plugin/hierarchy/envelope.js';
import { HierarchyKek } from '../../src/plugin/hierarchy/kek.js';
import { InMemoryKek } from '../../src/plugin/hierarchy/local-kek.js';
import { checkAnnotations } from '../../src/transform/kmsv2/validation.js';
import { FaultyKek } from '../helpers/faulty-kek.js';
import { makeTempDir } from '../helpers/plugin.js';
import { inProcessLogger, registerKeyFile } from '../helpers/test-log.js';

const log = inProcessLogger('kms-plugin');
const SETTINGS: HierarchySettings = { maxAgeMs: 3_600_000, maxUses: 1_000_000, cacheSize: 100, remoteTimeoutMs: 2000 };

/** A pino logger whose JSON lines land in `lines`. */
function capturingLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done(); } });
  return { log: pino({ level: 'debug' }, stream), lines };
}

interface Fixture {
  dir: string;
  keyFile: string;
  remote: FaultyKek;
  registry: Registry;
  open(settings?: Partial<HierarchySettings>, extra?: { now?: () => number; log?: Logger }): Promise<HierarchyKek>;
}

async function withRemote(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await makeTempDir('atrest-hierarchy-');
  const keyFile = join(dir, 'remote-kek.json');
  await localBackend.initKey({ keyFile }, { log });
  registerKeyFile(keyFile);
  const remote = new FaultyKek(await localBackend.open({ keyFile }, { log }));
  const registry = newRegistry();
  const opened: HierarchyKek[] = [];
  try {
    await fn({
      dir, keyFile, remote, registry,
      async open(settings = {}, extra = {}) {
        const h = await HierarchyKek.open(remote, { ...SETTINGS, ...settings }, { log: extra.log ?? log, metrics: registry, endpoint: 'test remote 10.0.0.1:5696', ...(extra.now ? { now: extra.now } : {}) });
        opened.push(h);
        return h;
      },
    });
  } finally {
    remote.recover();
    await remote.close();
    await cleanup();
  }
}

async function metric(registry: Registry, name: string, labels = ''): Promise<number | undefined> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

const remoteCalls = (registry: Registry, operation: string, outcome = 'ok'): Promise<number> =>
  metric(registry, 'atrest_kms_plugin_remote_kek_calls_total', `{operation="${operation}",outcome="${outcome}"}`).then((v) => v ?? 0);

test('envelope: the annotation key is a valid kube annotation; v1 and v2 seal and open; byte 0 tells old values apart', async () => {
  assert.equal(checkAnnotations({ [LOCAL_KEK_ANNOTATION]: Buffer.alloc(200) }), undefined);
  const kek = new InMemoryKek(randomBytes(32), randomBytes(70), 'kmip:k/v1:1', Date.now());
  const dek = randomBytes(32);
  const v1 = kek.seal(dek, false);
  assert.equal(v1.annotations, undefined);
  assert.ok(isEnvelope(v1.ciphertext) && v1.ciphertext.length === 3 + 2 + 70 + 12 + 32 + 16);
  assert.ok(!v1.ciphertext.includes(dek));
  assert.deepEqual(kek.open(parseEnvelope(v1.ciphertext, undefined)), dek);
  const v2 = kek.seal(dek, true);
  assert.equal(v2.ciphertext.length, 3 + 12 + 32 + 16);
  assert.deepEqual(Object.keys(v2.annotations ?? {}), [LOCAL_KEK_ANNOTATION]);
  assert.deepEqual(kek.open(parseEnvelope(v2.ciphertext, v2.annotations)), dek);
  assert.equal(parseEnvelope(v2.ciphertext, v2.annotations).carrier, CARRIER_ANNOTATION);
  // The kmip and pkcs11 backends' own ciphertexts (format byte 0x01) are not envelopes.
  assert.equal(isEnvelope(Buffer.from([0x01, 0x01, 0x01, 0x31])), false);
  assert.throws(() => parseEnvelope(v2.ciphertext, {}), /annotation local-kek\.atrest\.dev .* is missing/);
  assert.throws(() => parseEnvelope(Buffer.from([0x48, 0x02, 0x01]), undefined), /unknown envelope version 2/);
  assert.throws(() => parseEnvelope(v1.ciphertext.subarray(0, 40), undefined), /truncated/);
  // A raw key of the wrong length is refused (and never kept).
  assert.throws(() => new InMemoryKek(Buffer.alloc(31), randomBytes(70), '', 0), /unwrapped to 31 bytes, not 32/);
});

test('tampering: a value with another value\'s wrapped local KEK, an edited one, or moved between carriers is rejected, even when both wrap the same key', async () => {
  await withRemote(async ({ remote }) => {
    // Two wrapped forms of ONE local KEK (the remote wraps with a fresh nonce each time).
    const raw = randomBytes(32);
    const a = new InMemoryKek(Buffer.from(raw), (await remote.encrypt(raw)).ciphertext, 'id', Date.now());
    const b = new InMemoryKek(Buffer.from(raw), (await remote.encrypt(raw)).ciphertext, 'id', Date.now());
    raw.fill(0);
    assert.notDeepEqual(a.wrapped, b.wrapped);
    const dek = randomBytes(32);
    const v2 = a.seal(dek, true);
    // Swap the annotation for b's (same key, other bytes): the AAD binds the bytes.
    assert.throws(() => b.open(parseEnvelope(v2.ciphertext, { [LOCAL_KEK_ANNOTATION]: b.wrapped })), (e: unknown) => e instanceof BackendError && e.code === 'INVALID_CIPHERTEXT');
    const v1 = a.seal(dek, false);
    const swapped = Buffer.concat([v1.ciphertext.subarray(0, 5), b.wrapped, v1.ciphertext.subarray(5 + a.wrapped.length)]);
    assert.throws(() => b.open(parseEnvelope(swapped, undefined)), /does not authenticate under local KEK/);
    // The same sealed bytes presented in the other carrier.
    const moved = Buffer.concat([Buffer.from([0x48, 0x01, 0x02]), v1.ciphertext.subarray(5 + a.wrapped.length)]);
    assert.throws(() => a.open(parseEnvelope(moved, { [LOCAL_KEK_ANNOTATION]: a.wrapped })), /does not authenticate/);
    // A local KEK handed a value that names another wrapped local KEK (even of the same key) refuses it.
    assert.throws(() => b.open(parseEnvelope(v1.ciphertext, undefined)), /does not authenticate under local KEK/);
    assert.throws(() => b.open(parseEnvelope(v2.ciphertext, v2.annotations)), /does not authenticate under local KEK/);
  });
});

test('HierarchyKek: v1 and v2 round trips under the remote key_id; one remote call for many Encrypts; old remote ciphertexts still decrypt', async () => {
  await withRemote(async ({ remote, registry, open }) => {
    const legacy = await remote.encrypt(Buffer.alloc(32, 7));
    const h = await open();
    assert.equal(await h.currentKeyId(), await remote.currentKeyId());
    const before = remote.calls.encrypt;
    const values = [];
    for (let i = 0; i < 500; i++) {
      const dek = randomBytes(32);
      const v1 = await h.encrypt(dek);
      const v2 = await h.encrypt(dek, { annotations: true });
      assert.equal(v1.keyId, await remote.currentKeyId());
      assert.equal(v2.keyId, v1.keyId);
      values.push({ dek, v1, v2 });
    }
    assert.equal(remote.calls.encrypt, before, 'no remote wrap for 1000 Encrypts');
    for (const { dek, v1, v2 } of values.slice(0, 50)) {
      assert.deepEqual(await h.decrypt(v1.ciphertext), dek);
      assert.deepEqual(await h.decrypt(v2.ciphertext, v2.annotations), dek);
    }
    assert.equal(remote.calls.decrypt, 0, 'values under the held local KEK never go to the remote');
    assert.deepEqual(await h.decrypt(legacy.ciphertext), Buffer.alloc(32, 7));
    assert.equal(remote.calls.decrypt, 1, 'a value from before the hierarchy does');
    assert.equal(await remoteCalls(registry, 'wrap'), 1);
    assert.equal(await metric(registry, 'atrest_kms_plugin_local_kek_rotations_total', '{reason="start"}'), 1);
    assert.equal(await metric(registry, 'atrest_kms_plugin_local_kek_uses'), 1000);
    assert.equal(await metric(registry, 'atrest_kms_plugin_remote_kek_up'), 1);
  });
});

test('cold start: another process decrypts many values of one local KEK with one remote unwrap, concurrent misses sharing it; the cache is bounded', async () => {
  await withRemote(async ({ remote, registry, open }) => {
    const writer = await open();
    const values = await Promise.all(Array.from({ length: 300 }, async () => {
      const dek = randomBytes(32);
      return { dek, v1: await writer.encrypt(dek) };
    }));
    const reader = await open({ cacheSize: 2 });
    const unwrapsBefore = remote.calls.decrypt;
    const plains = await Promise.all(values.map(({ v1 }) => reader.decrypt(v1.ciphertext)));
    plains.forEach((p, i) => assert.deepEqual(p, values[i]!.dek));
    assert.equal(remote.calls.decrypt - unwrapsBefore, 1, 'one unwrap for 300 values');
    assert.equal(await metric(registry, 'atrest_kms_plugin_local_kek_cache_lookups_total', '{result="miss"}'), 300);

    const cache = new LocalKekCache(2);
    const keks = [0, 1, 2].map(() => new InMemoryKek(randomBytes(32), randomBytes(40), '', 0));
    for (const k of keks) cache.add(k);
    assert.equal(cache.size, 2);
    assert.equal(cache.peek(keks[0]!.cacheKey), undefined, 'least recently used went first');
  });
});

test('max-uses and max-age: a new local KEK is wrapped in the background before the limit; older values still decrypt', async () => {
  await withRemote(async ({ registry, remote, open }) => {
    let clock = 1_000_000;
    const h = await open({ maxUses: 20, maxAgeMs: 60_000 }, { now: () => clock });
    const first = await h.encrypt(Buffer.alloc(32, 1));
    for (let i = 0; i < 18; i++) await h.encrypt(Buffer.alloc(32, 2));
    // 90% used: the replacement starts; the Encrypt that noticed it did not wait.
    await waitUntil(async () => (await metric(registry, 'atrest_kms_plugin_local_kek_rotations_total', '{reason="max_uses"}')) === 1);
    const second = await h.encrypt(Buffer.alloc(32, 3));
    assert.notDeepEqual(parseEnvelope(second.ciphertext, undefined).wrapped, parseEnvelope(first.ciphertext, undefined).wrapped);
    assert.deepEqual(await h.decrypt(first.ciphertext), Buffer.alloc(32, 1));
    const wraps = remote.calls.encrypt;
    clock += 60_000;
    await h.encrypt(Buffer.alloc(32, 4));
    await waitUntil(async () => (await metric(registry, 'atrest_kms_plugin_local_kek_rotations_total', '{reason="max_age"}')) === 1);
    assert.equal(remote.calls.encrypt, wraps + 1);
  });
});

async function waitUntil(condition: () => Promise<boolean>, what = 'condition'): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('outage: Encrypt goes on past max-age and max-uses, held values decrypt, unknown ones are Unavailable, degraded() and metrics say so; recovery replaces the overdue key', async () => {
  await withRemote(async ({ remote, registry, open }) => {
    let clock = 5_000_000;
    const { log: captured, lines } = capturingLogger();
    const h = await open({ maxUses: 10, maxAgeMs: 1000, hardMaxUses: 40 }, { now: () => clock, log: captured });
    const stranger = await open();
    const foreign = await stranger.encrypt(Buffer.alloc(32, 9));
    const held = await h.encrypt(Buffer.alloc(32, 8), { annotations: true });
    remote.mode = 'down';
    await assert.rejects(h.refresh(), /injected outage/);
    clock += 10_000;
    const answered = [];
    for (let i = 0; i < 30; i++) answered.push(await h.encrypt(Buffer.alloc(32, i), { annotations: i % 2 === 0 }));
    assert.equal(answered.length, 30, 'all answered, past both limits');
    assert.deepEqual(await h.decrypt(held.ciphertext, held.annotations), Buffer.alloc(32, 8));
    assert.deepEqual(await h.decrypt(answered[29]!.ciphertext), Buffer.alloc(32, 29));
    const errors: string[] = [];
    await assert.rejects(h.decrypt(foreign.ciphertext), (e: unknown) => { errors.push(String(e)); return e instanceof BackendError && e.code === 'UNAVAILABLE'; });
    assert.match(h.degraded() ?? '', /^remote KEK \(test remote 10\.0\.0\.1:5696\) unavailable for 10s .*injected outage.*serving with local KEK sha256:[0-9a-f]{16} from memory \(31 values sealed, 10s old, past its limit\)/);
    assert.equal(await metric(registry, 'atrest_kms_plugin_remote_kek_up'), 0);
    assert.equal(await metric(registry, 'atrest_kms_plugin_local_kek_overdue'), 1);
    assert.ok((await remoteCalls(registry, 'wrap', 'unavailable')) >= 1);
    assert.equal(lines.filter((l) => l['event'] === 'remote-kek-unavailable').length, 1, 'the outage is logged once');
    assert.equal(lines.filter((l) => l['event'] === 'local-kek-overdue').length, 1);
    // The AES-GCM bound holds even now (hardMaxUses stands in for 2^32).
    for (let i = 0; i < 9; i++) await h.encrypt(Buffer.alloc(32));
    await assert.rejects(h.encrypt(Buffer.alloc(32)), (e: unknown) => { errors.push(String(e)); return /sealed 40 values, the most AES-GCM with random nonces allows.*test remote 10\.0\.0\.1:5696.*injected outage/.test(String(e)); });

    remote.recover();
    await h.refresh();
    assert.equal(h.degraded(), undefined);
    assert.equal(await metric(registry, 'atrest_kms_plugin_remote_kek_up'), 1);
    assert.equal(await metric(registry, 'atrest_kms_plugin_local_kek_overdue'), 0);
    assert.equal(lines.filter((l) => l['event'] === 'remote-kek-recovered').length, 1);
    assert.ok(lines.some((l) => l['event'] === 'local-kek-created' && l['previousUses'] === 40));
    assert.deepEqual(await h.decrypt(answered[3]!.ciphertext), Buffer.alloc(32, 3), 'values sealed during the outage');
    assert.deepEqual(await h.decrypt(foreign.ciphertext), Buffer.alloc(32, 9));
    // No local KEK (what the remote was asked to wrap) in any log line or error message, in any encoding.
    const text = JSON.stringify(lines) + errors.join('\n');
    assert.ok(remote.plaintexts.length >= 2);
    for (const k of remote.plaintexts) for (const enc of ['hex', 'base64', 'base64url'] as const) assert.ok(!text.includes(k.toString(enc)), 'a local KEK leaked');
  });
});

test('a frozen remote: every remote call times out, Encrypt and held Decrypts never wait for it', async () => {
  await withRemote(async ({ remote, open }) => {
    const h = await open({ remoteTimeoutMs: 200, maxUses: 3 });
    const held = await h.encrypt(Buffer.alloc(32, 1));
    remote.mode = 'frozen';
    await assert.rejects(h.refresh(), /did not answer a refresh within 200 ms/);
    for (let i = 0; i < 10; i++) await h.encrypt(Buffer.alloc(32)); // past max-uses: the replacement hangs, Encrypt does not
    assert.deepEqual(await h.decrypt(held.ciphertext), Buffer.alloc(32, 1));
    assert.match(h.degraded() ?? '', /did not answer a (refresh|wrap) within 200 ms/);
  });
});

test('a remote that answers with a server-side failure (PyKMIP General Failure, a device error) is an outage: its misses are UNAVAILABLE, not a verdict on the value', async () => {
  await withRemote(async ({ remote, registry, open }) => {
    const h = await open();
    const stranger = await open();
    const foreign = await stranger.encrypt(Buffer.alloc(32, 4), { annotations: true });
    const legacy = await remote.encrypt(Buffer.alloc(32, 5));
    remote.mode = 'failing';
    // A miss (another process's local KEK) and a value from before the hierarchy: both need the
    // remote, which failed. gRPC Unavailable is what tells kube-apiserver and atrest verify "cannot
    // check now"; INTERNAL would make verify call the value undecryptable.
    for (const [ciphertext, annotations] of [[foreign.ciphertext, foreign.annotations], [legacy.ciphertext, undefined]] as const) {
      await assert.rejects(h.decrypt(ciphertext, annotations), (e: unknown) => e instanceof BackendError && e.code === 'UNAVAILABLE' && /General Failure/.test(e.message));
    }
    assert.equal(await metric(registry, 'atrest_kms_plugin_remote_kek_up'), 0);
    assert.ok((await remoteCalls(registry, 'unwrap', 'unavailable')) >= 2);
    remote.recover();
    assert.deepEqual(await h.decrypt(foreign.ciphertext, foreign.annotations), Buffer.alloc(32, 4));
  });
});

test('start while the remote is down fails closed, naming the remote', async () => {
  await withRemote(async ({ remote, open }) => {
    remote.mode = 'down';
    await assert.rejects(open(), (e: unknown) => {
      assert.ok(e instanceof BackendError && e.code === 'UNAVAILABLE');
      assert.match(e.message, /cannot make the first local KEK: the remote KEK \(test remote 10\.0\.0\.1:5696\) did not wrap it: injected outage/);
      return true;
    });
  });
});

test('remote key rotation: refresh makes a local KEK under the new remote version, key_id follows, older values decrypt', async () => {
  await withRemote(async ({ keyFile, open }) => {
    const h = await open();
    const old = await h.encrypt(Buffer.alloc(32, 1), { annotations: true });
    const rotated = await localBackend.rotateKey({ keyFile }, { log });
    registerKeyFile(keyFile);
    assert.notEqual(old.keyId, rotated);
    await h.refresh();
    assert.equal(await h.currentKeyId(), rotated);
    const fresh = await h.encrypt(Buffer.alloc(32, 2), { annotations: true });
    assert.equal(fresh.keyId, rotated);
    assert.deepEqual(await h.decrypt(old.ciphertext, old.annotations), Buffer.alloc(32, 1));
  });
});

test('a remote that refuses the current local KEK (revoked key) stops it sealing: Encrypt fails closed until a new one is made', async () => {
  await withRemote(async ({ remote, open }) => {
    const h = await open({ verifyIntervalMs: 0 });
    await h.encrypt(Buffer.alloc(32));
    remote.mode = 'refusing';
    await assert.rejects(h.refresh(), /injected refusal/);
    await assert.rejects(h.encrypt(Buffer.alloc(32)), (e: unknown) => e instanceof BackendError && e.code === 'KEY_NOT_FOUND' && /no longer unwraps local KEK/.test(e.message));
    assert.equal(h.degraded(), undefined, 'the remote answered: no outage');
    remote.recover();
    await h.refresh();
    await h.encrypt(Buffer.alloc(32));
  });
});

/** What the local backend (the "remote" here) answers for a retired version. */
const retiredRefusal = (e: unknown): boolean => e instanceof BackendError && e.code === 'KEY_RETIRED' && /retired at .*: restore it with `atrest kms-plugin restore-key/.test(e.message);

test('a remote version retired by another process: from the next refresh its held local KEKs open nothing (no remote call, logged once); an outage changes nothing; a restore brings them back', async () => {
  await withRemote(async ({ keyFile, remote, open }) => {
    const { log: captured, lines } = capturingLogger();
    const events = (event: string): Array<Record<string, unknown>> => lines.filter((l) => l['event'] === event);
    const h = await open({}, { log: captured });
    const legacy = await remote.encrypt(Buffer.alloc(32, 7));
    const v2value = await h.encrypt(Buffer.alloc(32, 1), { annotations: true });
    const v1value = await h.encrypt(Buffer.alloc(32, 2));
    const oldKeyId = v2value.keyId;
    const newKeyId = await localBackend.rotateKey({ keyFile }, { log });
    registerKeyFile(keyFile);
    await h.refresh();
    assert.equal(await h.currentKeyId(), newKeyId);
    const fresh = await h.encrypt(Buffer.alloc(32, 3), { annotations: true });

    // Retired while the remote cannot be asked: nothing changes until it answers again.
    remote.mode = 'down';
    await localBackend.retireKey!({ keyFile }, { log }, oldKeyId);
    registerKeyFile(keyFile);
    await assert.rejects(h.refresh(), /injected outage/);
    assert.deepEqual(await h.decrypt(v2value.ciphertext, v2value.annotations), Buffer.alloc(32, 1), 'an outage is not a retirement');
    remote.recover();
    await h.refresh();

    const unwraps = remote.calls.decrypt;
    for (let i = 0; i < 3; i++) {
      await assert.rejects(h.decrypt(v2value.ciphertext, v2value.annotations), retiredRefusal);
      await assert.rejects(h.decrypt(v1value.ciphertext), retiredRefusal);
      await assert.rejects(h.decrypt(legacy.ciphertext), retiredRefusal);
    }
    assert.equal(remote.calls.decrypt, unwraps, 'refused from memory: no remote call');
    assert.deepEqual(await h.decrypt(fresh.ciphertext, fresh.annotations), Buffer.alloc(32, 3), 'the new version serves on');
    assert.deepEqual(events('remote-kek-version-unusable').map((l) => [l['keyId'], l['droppedLocalKeks']]), [[oldKeyId, 1]]);
    assert.equal(events('retired-remote-kek-used').length, 1, 'the refusals are logged once');

    // Restored while the remote cannot be asked: still refused (the last known state), until it answers.
    remote.mode = 'down';
    await localBackend.restoreKey!({ keyFile }, { log }, oldKeyId);
    registerKeyFile(keyFile);
    await assert.rejects(h.refresh(), /injected outage/);
    await assert.rejects(h.decrypt(v2value.ciphertext, v2value.annotations), retiredRefusal);
    remote.recover();
    await h.refresh();
    assert.equal(events('remote-kek-version-usable').length, 1);
    assert.deepEqual(await h.decrypt(v2value.ciphertext, v2value.annotations), Buffer.alloc(32, 1));
    assert.deepEqual(await h.decrypt(v1value.ciphertext), Buffer.alloc(32, 2));
    assert.equal(remote.calls.decrypt, unwraps + 1, 'one remote unwrap brings the local KEK back');
    assert.deepEqual(await h.decrypt(legacy.ciphertext), Buffer.alloc(32, 7));
  });
});

test('the current local KEK of a version retired before this plugin followed the rotation: it opens and seals nothing more; a new one under the new version takes over', async () => {
  await withRemote(async ({ keyFile, remote, open }) => {
    const h = await open();
    const old = await h.encrypt(Buffer.alloc(32, 1), { annotations: true });
    const newKeyId = await localBackend.rotateKey({ keyFile }, { log });
    await localBackend.retireKey!({ keyFile }, { log }, old.keyId);
    registerKeyFile(keyFile);
    // The remote answers the refresh but refuses to wrap a replacement: the current one stays, refused.
    remote.mode = 'refusing';
    await assert.rejects(h.refresh(), /injected refusal/);
    await assert.rejects(h.decrypt(old.ciphertext, old.annotations), retiredRefusal);
    await assert.rejects(h.encrypt(Buffer.alloc(32)), (e: unknown) => e instanceof BackendError && e.code === 'KEY_RETIRED' && /seals nothing more.*retired at/.test(e.message));
    remote.recover();
    await h.refresh();
    assert.equal(await h.currentKeyId(), newKeyId);
    const fresh = await h.encrypt(Buffer.alloc(32, 2), { annotations: true });
    assert.equal(fresh.keyId, newKeyId);
    assert.deepEqual(await h.decrypt(fresh.ciphertext, fresh.annotations), Buffer.alloc(32, 2));
    await assert.rejects(h.decrypt(old.ciphertext, old.annotations), retiredRefusal);
  });
});

test('a listing in which the remote\'s current version may not unwrap is not believed: nothing is dropped, logged once', async () => {
  await withRemote(async ({ remote, open }) => {
    const { log: captured, lines } = capturingLogger();
    const h = await open({}, { log: captured });
    const value = await h.encrypt(Buffer.alloc(32, 1), { annotations: true });
    remote.usableOverride = new Set();
    await h.refresh();
    await h.refresh();
    assert.deepEqual(await h.decrypt(value.ciphertext, value.annotations), Buffer.alloc(32, 1));
    await h.encrypt(Buffer.alloc(32, 2));
    assert.equal(lines.filter((l) => l['event'] === 'remote-kek-versions-implausible').length, 1);
    assert.equal(lines.filter((l) => l['event'] === 'remote-kek-version-unusable').length, 0);
  });
});

test('flags: defaults, Go durations, and errors naming the flag', () => {
  assert.deepEqual(readHierarchySettings({}), { maxAgeMs: 86_400_000, maxUses: 1_000_000, cacheSize: 1000, remoteTimeoutMs: 10_000 });
  assert.deepEqual(readHierarchySettings({ localKekMaxAge: '90s', localKekMaxUses: '4294967296', localKekCacheSize: '5', remoteKekTimeout: '1.5s' }),
    { maxAgeMs: 90_000, maxUses: 2 ** 32, cacheSize: 5, remoteTimeoutMs: 1500 });
  assert.throws(() => readHierarchySettings({ localKekMaxAge: 'soon' }), /--local-kek-max-age "soon": time: invalid duration/);
  assert.throws(() => readHierarchySettings({ localKekMaxAge: '10ms' }), /--local-kek-max-age must be at least 1000 ms/);
  assert.throws(() => readHierarchySettings({ localKekMaxUses: '4294967297' }), /--local-kek-max-uses must be a whole number from 1 to 4294967296/);
  assert.throws(() => readHierarchySettings({ localKekCacheSize: '0' }), /--local-kek-cache-size/);
});

export type { KekBackend };
