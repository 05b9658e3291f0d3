// The KMS client side against an independent python plugin over real UNIX sockets.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import type { KMSConfiguration } from '../../src/config/types.js';
import { createKmsProviders, type KmsProvidersOptions } from '../../src/kms/factory.js';
import { decodeEncryptedObject } from '../../src/transform/kmsv2/encrypted-object.js';
import { CROSSCHECK_SCRIPT, PYTHON, PythonKmsPlugin, waitFor } from '../helpers/python-kms-plugin.js';

const enc = (s: string): Buffer => Buffer.from(s, 'utf8');
/** How errors name a plugin (src/kms/naming.ts): its endpoint, as a regular expression. */
const PLUGIN = '\\(plugin unix://[^)]+\\)';
const FAST = { statusHealthyMs: 50, statusUnhealthyMs: 50, probePositiveTtlMs: 0, probeNegativeTtlMs: 0 };

/** A temp dir, a running python plugin, and cleanup registered on the test. */
async function plugin(t: TestContext, listen?: string, keyId?: string): Promise<PythonKmsPlugin> {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-kms-'));
  const p = new PythonKmsPlugin(listen ?? join(dir, 'kms.sock'), keyId);
  t.after(async () => {
    await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await p.start();
  return p;
}

function providers(t: TestContext, options: KmsProvidersOptions = {}) {
  const kms = createKmsProviders(options);
  t.after(() => kms.close());
  return kms;
}

function kmsConfig(endpoint: string, apiVersion: 'v1' | 'v2', extra: Partial<KMSConfiguration> = {}): KMSConfiguration {
  return { apiVersion, name: `py-${apiVersion}`, endpoint, timeoutMs: 3000, ...(apiVersion === 'v1' ? { cachesize: 1000 } : {}), ...extra };
}

test('kms v1 over a socket: round trip, Version handshake once, 1,000 reads of 10 objects with cachesize 100 make at most 10 Decrypt calls', async (t) => {
  const p = await plugin(t);
  const writer = providers(t).factory(kmsConfig(p.endpoint, 'v1', { cachesize: 100 }), 0);
  const stored = [];
  for (let i = 0; i < 10; i++) stored.push(await writer.toStorage(enc(`value-${i}`), enc(`/registry/secrets/ns/s${i}`)));
  assert.equal(await p.count('v1.Encrypt'), 10, 'a fresh DEK per write');
  const reader = providers(t).factory(kmsConfig(p.endpoint, 'v1', { cachesize: 100 }), 0);
  for (let i = 0; i < 1000; i++) {
    const out = await reader.fromStorage(stored[i % 10] as Buffer, enc(`/registry/secrets/ns/s${i % 10}`));
    assert.equal(out.plaintext.toString(), `value-${i % 10}`);
    assert.equal(out.stale, false);
  }
  const counts = await p.counts();
  assert.ok((counts['v1.Decrypt'] ?? 0) <= 10, `Decrypt calls: ${counts['v1.Decrypt']}`);
  assert.equal(counts['v1.Decrypt'], 10);
  assert.equal(counts['v1.Version'], 2, 'one handshake per connection');
});

test('kms v1 over a socket: cachesize 2 evicts, so a third DEK costs Decrypt calls again', async (t) => {
  const p = await plugin(t);
  const writer = providers(t).factory(kmsConfig(p.endpoint, 'v1', { cachesize: -1 }), 0);
  const stored = await Promise.all([0, 1, 2].map((i) => writer.toStorage(enc(`v${i}`), enc(`/k/${i}`))));
  const reader = providers(t).factory(kmsConfig(p.endpoint, 'v1', { cachesize: 2 }), 0);
  for (let round = 0; round < 3; round++) {
    for (const i of [0, 1, 2]) await reader.fromStorage(stored[i] as Buffer, enc(`/k/${i}`));
  }
  assert.equal(await p.count('v1.Decrypt'), 9, 'round-robin over 3 DEKs with 2 slots misses every time');
  await reader.fromStorage(stored[2] as Buffer, enc('/k/2'));
  assert.equal(await p.count('v1.Decrypt'), 9, 'the most recent DEK is cached');
});

test('kms v2 over a socket: 1,000 writes make a handful of plugin calls; a fresh reader decrypts each seed once; uids are v4 UUIDs', async (t) => {
  const p = await plugin(t);
  const kms = providers(t);
  const writer = kms.factory(kmsConfig(p.endpoint, 'v2'), 0);
  const values: Buffer[] = [];
  for (let i = 0; i < 1000; i++) values.push(await writer.toStorage(enc(`v${i}`), enc(`/registry/secrets/ns/s${i}`)));
  const counts = await p.counts();
  const calls = Object.values(counts).reduce((a, b) => a + b, 0);
  assert.ok(calls <= 5, `plugin calls for 1,000 writes: ${JSON.stringify(counts)}`);
  assert.equal(counts['v2.Encrypt'], 1);
  const reader = providers(t).factory(kmsConfig(p.endpoint, 'v2'), 0);
  for (let i = 0; i < 1000; i += 7) assert.equal((await reader.fromStorage(values[i] as Buffer, enc(`/registry/secrets/ns/s${i}`))).plaintext.toString(), `v${i}`);
  assert.equal(await p.count('v2.Decrypt'), 1);
  const uids = await p.uids();
  assert.equal(new Set(uids).size, uids.length);
  for (const uid of uids) assert.match(uid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal((await p.lastDecrypt()).key_id, 'key-1');
});

test('kms v2 rotation is picked up by Status polling; old values stay readable and are stale', async (t) => {
  const p = await plugin(t);
  const kms = providers(t, { intervals: FAST });
  const tr = kms.factory(kmsConfig(p.endpoint, 'v2'), 0);
  await kms.ready();
  const old = await tr.toStorage(enc('before'), enc('/k'));
  assert.equal(decodeEncryptedObject(old).keyID, 'key-1');
  await p.set({ key_id: 'key-2' });
  let fresh: Buffer = old;
  await waitFor(async () => {
    fresh = await tr.toStorage(enc('after'), enc('/k'));
    return decodeEncryptedObject(fresh).keyID === 'key-2';
  }, 'writes with the rotated key_id');
  const a = await tr.fromStorage(old, enc('/k'));
  assert.deepEqual([a.plaintext.toString(), a.stale], ['before', true]);
  const b = await tr.fromStorage(fresh, enc('/k'));
  assert.deepEqual([b.plaintext.toString(), b.stale], ['after', false]);
});

test('plugin killed: kms v1 writes fail naming the provider, cached reads succeed; restarted: the client recovers', async (t) => {
  const p = await plugin(t);
  const tr = providers(t).factory(kmsConfig(p.endpoint, 'v1', { timeoutMs: 500 }), 0);
  const stored = await tr.toStorage(enc('kept'), enc('/k'));
  await p.stop();
  await assert.rejects(tr.toStorage(enc('lost'), enc('/k')), (err: Error & { code?: string }) => {
    // A killed plugin is unreachable (no connection), not a plugin that answered with an error.
    assert.match(err.message, new RegExp(`^kms v1 provider "py-v1" ${PLUGIN} cannot encrypt: plugin unreachable: rpc error: code = (DeadlineExceeded|Unavailable) desc = `));
    assert.equal(err.code, 'KMS_UNAVAILABLE');
    return true;
  });
  assert.equal((await tr.fromStorage(stored, enc('/k'))).plaintext.toString(), 'kept');
  await p.start();
  await waitFor(async () => tr.toStorage(enc('back'), enc('/k')).then(() => true, () => false), 'writes after the restart');
});

test('plugin killed: kms v2 writes fail once the write seed expires, cached reads go on; restarted: writes resume', async (t) => {
  const p = await plugin(t);
  const kms = providers(t, { intervals: { ...FAST, writeDekMaxTtlMs: 1000 } });
  const tr = kms.factory(kmsConfig(p.endpoint, 'v2', { timeoutMs: 500 }), 0);
  await kms.ready();
  let stored: Buffer | undefined;
  // Retried only so a stalled CI machine cannot expire the seed before the first write.
  await waitFor(async () => tr.toStorage(enc('kept'), enc('/k')).then((v) => { stored = v; return true; }, () => false), 'a first write');
  assert.ok(stored);
  await p.stop();
  let lastError: Error | undefined;
  await waitFor(async () => tr.toStorage(enc('x'), enc('/k')).then(() => false, (err: Error) => { lastError = err; return true; }), 'writes to fail after expiry');
  assert.match(lastError?.message ?? '', new RegExp(`^kms v2 provider "py-v2" ${PLUGIN} cannot encrypt: plugin unreachable: encryptedDEKSource with keyID hash "sha256:[0-9a-f]{64}" expired at .*; the last Status call failed: rpc error: `));
  assert.equal((await tr.fromStorage(stored, enc('/k'))).plaintext.toString(), 'kept');
  // An object whose seed is not cached needs the plugin: a clear KMS_UNAVAILABLE read error.
  const fresh = providers(t, { intervals: FAST }).factory(kmsConfig(p.endpoint, 'v2', { timeoutMs: 200 }), 0);
  await assert.rejects(fresh.fromStorage(stored, enc('/k')), (err: Error & { code?: string }) =>
    err.code === 'KMS_UNAVAILABLE' && new RegExp(`^kms v2 provider "py-v2" ${PLUGIN}: plugin unreachable: failed to decrypt DEK, error: rpc error: code = (DeadlineExceeded|Unavailable) desc = `).test(err.message));
  await p.start();
  await waitFor(async () => tr.toStorage(enc('back'), enc('/k')).then(() => true, () => false), 'writes after the restart');
});

test('a provider made before its plugin starts waits for the socket (waitForReady) and primes by polling', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-kms-late-'));
  const p = new PythonKmsPlugin(join(dir, 'kms.sock'));
  t.after(async () => { await p.stop(); rmSync(dir, { recursive: true, force: true }); });
  const kms = providers(t, { intervals: FAST });
  const v1 = kms.factory(kmsConfig(p.endpoint, 'v1', { timeoutMs: 8000 }), 0);
  const v2 = kms.factory(kmsConfig(p.endpoint, 'v2', { timeoutMs: 100 }), 1);
  const pending = v1.toStorage(enc('early'), enc('/k'));
  await p.start();
  const stored = await pending;
  assert.equal((await v1.fromStorage(stored, enc('/k'))).plaintext.toString(), 'early');
  await waitFor(async () => v2.toStorage(enc('x'), enc('/k')).then(() => true, () => false), 'the v2 provider to prime');
});

test('a plugin slower than the timeout fails the call with DeadlineExceeded; it works again when fast', async (t) => {
  const p = await plugin(t);
  await p.set({ delay_ms: { 'v1.Encrypt': 2000 } });
  const tr = providers(t).factory(kmsConfig(p.endpoint, 'v1', { timeoutMs: 200 }), 0);
  // Connected but slow: not "plugin unreachable".
  await assert.rejects(tr.toStorage(enc('x'), enc('/k')), new RegExp(`${PLUGIN} cannot encrypt: rpc error: code = DeadlineExceeded desc = `));
  await p.set({ delay_ms: {} });
  await waitFor(async () => tr.toStorage(enc('x'), enc('/k')).then(() => true, () => false), 'a fast plugin to work again');
});

test('bad plugin responses: v1 version, v2 ciphertext sizes, key_id size, annotations, healthz — checks fail with kube-apiserver texts', async (t) => {
  const p = await plugin(t);
  await p.set({ v1_version: 'v2' });
  const v1 = providers(t).factory(kmsConfig(p.endpoint, 'v1'), 0);
  await assert.rejects(v1.toStorage(enc('x'), enc('/k')), { message: `kms v1 provider "py-v1" (plugin ${p.endpoint}) cannot encrypt: KMS provider api version v2 is not supported, only v1beta1 is supported now` });

  const kms = providers(t, { intervals: { ...FAST, statusHealthyMs: 3_600_000, statusUnhealthyMs: 3_600_000 } });
  const tr = kms.factory(kmsConfig(p.endpoint, 'v2'), 0);
  await kms.ready();
  const [check] = kms.healthChecks();
  assert.equal(check?.name, 'kms-providers');
  await check?.check();
  const cases: Array<[Parameters<PythonKmsPlugin['set']>[0], RegExp]> = [
    [{ ciphertext: 'oversized' }, /errGen=failed to validate encrypted DEK source: encrypted DEK source is 1025 bytes, which exceeds the max size of 1024/],
    [{ ciphertext: 'empty' }, /errGen=failed to validate encrypted DEK source: encrypted DEK source is empty/],
    [{ encrypt_key_id: 'k'.repeat(1025) }, /errGen=failed to validate key id: keyID is 1025 bytes, which exceeds the max size of 1024/],
    [{ encrypt_key_id: 'not-the-status-key' }, /errGen=<nil>, statusKeyIDHash="sha256:[0-9a-f]{64}", encryptKeyIDHash="sha256:[0-9a-f]{64}"/],
    [{ annotations: { 'Not_FQDN': 'x' } }, /errGen=failed to validate annotations: annotations: Invalid value: "Not_FQDN": a lowercase RFC 1123 subdomain/],
    [{ status_key_id: 'k'.repeat(1025) }, new RegExp(`^kms-provider-0: kms v2 provider "py-v2" ${PLUGIN}: kmsv2 Provider py-v2 is not healthy, error: got invalid KMSv2 KeyID hash "sha256:[0-9a-f]{64}": keyID is 1025 bytes, which exceeds the max size of 1024$`)],
    [{ healthz: 'err' }, new RegExp(`^kms-provider-0: kms v2 provider "py-v2" ${PLUGIN}: kmsv2 Provider py-v2 is not healthy, error: got unexpected healthz status: err$`)],
    [{ status_version: 'v3' }, new RegExp(`^kms-provider-0: kms v2 provider "py-v2" ${PLUGIN}: kmsv2 Provider py-v2 is not healthy, error: expected KMSv2 API version v2, got v3$`)],
    [{ status_version: 'v2beta1' }, /KMSv2 API version should not change after the initial status response version v2, got v2beta1$/],
  ];
  let n = 0;
  for (const [knobs, expected] of cases) {
    const rotating = knobs.status_key_id === undefined && knobs.healthz === undefined && knobs.status_version === undefined;
    await p.set({ ...knobs, ...(rotating ? { key_id: `key-r${n++}` } : {}) });
    await assert.rejects(check?.check() ?? Promise.resolve(), (err: Error) => {
      assert.match(err.message, expected);
      if (rotating) assert.match(err.message, new RegExp(`^kms-provider-0: kms v2 provider "py-v2" ${PLUGIN}: kmsv2 Provider py-v2 is not healthy, error: failed to rotate DEK uid="[0-9a-f-]{36}", useSeed=true, errState=<nil>, `));
      return true;
    });
    // The plugin's bad answer never replaces the good seed.
    assert.equal(decodeEncryptedObject(await tr.toStorage(enc('x'), enc('/k'))).keyID, 'key-1');
    await p.set({ ciphertext: 'normal', encrypt_key_id: null, status_key_id: null, annotations: {}, healthz: 'ok', status_version: 'v2', key_id: 'key-1' });
  }
});

test('abstract socket endpoint unix:///@name reaches the plugin', async (t) => {
  // Node 20's libuv pads abstract addresses to the whole sun_path; a 107-byte name is unaffected,
  // so this exercises the real abstract namespace against a peer that binds the exact name.
  const name = `@atrest-${process.pid}-${randomBytes(4).toString('hex')}-`.padEnd(108, 'x');
  const p = await plugin(t, name);
  assert.equal(p.endpoint, `unix:///${name}`);
  const kms = providers(t);
  const v1 = kms.factory(kmsConfig(p.endpoint, 'v1'), 0);
  const v2 = kms.factory(kmsConfig(p.endpoint, 'v2'), 1);
  await kms.ready();
  assert.equal((await v1.fromStorage(await v1.toStorage(enc('one'), enc('/k')), enc('/k'))).plaintext.toString(), 'one');
  assert.equal((await v2.fromStorage(await v2.toStorage(enc('two'), enc('/k')), enc('/k'))).plaintext.toString(), 'two');
});

test('health checks: kms-provider-<i> with a v1 provider, one kms-providers otherwise; v1 probe is encrypt+decrypt of ping, cached', async (t) => {
  const p = await plugin(t);
  const mixed = providers(t, { intervals: { probePositiveTtlMs: 60_000, probeNegativeTtlMs: 60_000 } });
  mixed.factory(kmsConfig(p.endpoint, 'v1'), 0);
  mixed.factory(kmsConfig(p.endpoint, 'v2'), 1);
  await mixed.ready();
  const checks = mixed.healthChecks();
  assert.deepEqual(checks.map((c) => c.name), ['kms-provider-0', 'kms-provider-1']);
  await checks[0]?.check();
  await checks[0]?.check();
  const counts = await p.counts();
  assert.equal(counts['v1.Encrypt'], 1, 'second check answered from the 20 s cache');
  assert.equal(counts['v1.Decrypt'], 1);

  const onlyV2 = providers(t);
  onlyV2.factory(kmsConfig(p.endpoint, 'v2'), 0);
  onlyV2.factory({ ...kmsConfig(p.endpoint, 'v2'), name: 'second' }, 1);
  assert.deepEqual(onlyV2.healthChecks().map((c) => c.name), ['kms-providers']);
  assert.deepEqual(providers(t, { reload: true }).healthChecks().map((c) => c.name), ['kms-providers']);
  assert.deepEqual(providers(t).healthChecks(), []);
});

test('v1 health check failure text, and metrics: latency by method and code, key_ids only as sha256 hashes', async (t) => {
  const p = await plugin(t, undefined, 'very-secret-key-id');
  const registry = new Registry();
  const kms = providers(t, { metrics: registry });
  const v1 = kms.factory(kmsConfig(p.endpoint, 'v1'), 0);
  const v2 = kms.factory(kmsConfig(p.endpoint, 'v2'), 1);
  await kms.ready();
  await v1.fromStorage(await v1.toStorage(enc('a'), enc('/k')), enc('/k'));
  await v2.fromStorage(await v2.toStorage(enc('b'), enc('/k')), enc('/k'));
  await p.set({ fail: { 'v1.Encrypt': 'UNAVAILABLE' } });
  const [c0] = kms.healthChecks();
  await assert.rejects(c0?.check() ?? Promise.resolve(), { message: `kms v1 provider "py-v1" (plugin ${p.endpoint}): failed to perform encrypt section of the healthz check for KMS Provider py-v1, error: rpc error: code = Unavailable desc = injected failure` });
  const text = await registry.metrics();
  assert.match(text, /apiserver_envelope_encryption_kms_operations_latency_seconds_count\{provider_name="py-v2",method_name="\/v2.KeyManagementService\/Encrypt",grpc_status_code="OK"\} 1/);
  assert.match(text, /apiserver_envelope_encryption_kms_operations_latency_seconds_count\{provider_name="py-v1",method_name="\/v1beta1.KeyManagementService\/Encrypt",grpc_status_code="Unavailable"\} 1/);
  assert.match(text, /apiserver_envelope_encryption_key_id_hash_total\{transformation_type="to_storage",provider_name="py-v2",key_id_hash="sha256:[0-9a-f]{64}",apiserver_id_hash=""\} 1/);
  assert.match(text, /apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds\{provider_name="py-v2",key_id_hash="sha256:/);
  assert.match(text, /apiserver_envelope_encryption_dek_cache_fill_percent 0\.001/);
  assert.ok(!text.includes('very-secret-key-id'), 'no raw key_id in metrics');
});

test('cross-check: a kms v2 value written by atrest decrypts with an independent python reader of format.md', async (t) => {
  const p = await plugin(t);
  const kms = providers(t);
  const tr = kms.factory(kmsConfig(p.endpoint, 'v2'), 0);
  const key = '/registry/secrets/default/cross-check';
  const inner = await tr.toStorage(enc('pandas are the best'), enc(key));
  const value = Buffer.concat([enc('k8s:enc:kms:v2:py-v2:'), inner]);
  const out = execFileSync(PYTHON, [CROSSCHECK_SCRIPT, p.master, key], { input: value.toString('hex') }).toString().trim();
  assert.equal(Buffer.from(out, 'hex').toString(), 'pandas are the best');
});
