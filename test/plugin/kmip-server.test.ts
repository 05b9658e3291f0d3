// The KMIP client and the kmip backend against a real KMIP server: Debian's PyKMIP, one instance
// for this file (test/helpers/pykmip.ts), mutual TLS with certificates made here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { KmipClient } from '../../src/plugin/kmip/client.js';
import { KmipError } from '../../src/plugin/kmip/errors.js';
import { KmipKek } from '../../src/plugin/kmip/kek.js';
import { ResultReason, RevocationReasonCode, State } from '../../src/plugin/kmip/tags.js';
import { kmipBackend } from '../../src/plugin/backends/kmip.js';
import { BackendError, type BackendContext, type BackendOptions, type KekBackend } from '../../src/plugin/backend.js';
import { newRegistry } from '../../src/metrics.js';
import { startPluginServer } from '../../src/plugin/server.js';
import { freePort, makeCa, makeLeaf, startPykmip, type PykmipServer } from '../helpers/pykmip.js';
import { PluginProcess, TestKmsClient, grpcCodeOf, makeTempDir, runAtrest, waitFor } from '../helpers/plugin.js';
import { inProcessLogger } from '../helpers/test-log.js';

let srv: PykmipServer;
let admin: KmipClient;
const open: KekBackend[] = [];

before(async () => {
  srv = await startPykmip();
  admin = new KmipClient({
    host: srv.host,
    port: srv.port,
    ca: await readFile(srv.pki.caCert),
    cert: await readFile(srv.pki.client.certPath),
    key: await readFile(srv.pki.client.keyPath),
  });
});

after(async () => {
  for (const b of open) await b.close();
  admin?.close();
  await srv?.cleanup();
});

function options(keyName: string, extra: BackendOptions = {}): BackendOptions {
  return {
    kmipEndpoint: srv.endpoint,
    kmipCa: srv.pki.client.caPath,
    kmipCert: srv.pki.client.certPath,
    kmipKey: srv.pki.client.keyPath,
    kmipKeyName: keyName,
    ...extra,
  };
}

const context = (): BackendContext => ({ log: inProcessLogger('kms-plugin'), metrics: newRegistry() });

async function openBackend(keyName: string, extra: BackendOptions = {}, ctx = context()): Promise<KekBackend> {
  const b = await kmipBackend.open(options(keyName, extra), ctx);
  open.push(b);
  return b;
}

/** Asserts a BackendError with `code` whose message matches `re`. */
async function rejectsBackend(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof BackendError, `expected BackendError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return true;
  });
}

async function sessionsInLog(): Promise<number> {
  return ((await readFile(srv.logPath, 'utf8')).match(/Starting session/g) ?? []).length;
}

test('client: Create, Activate, Locate, Get Attributes, Encrypt/Decrypt in GCM and CBC over one reused connection', async () => {
  const uid = await admin.createAesKey({ names: ['client-test/v1'], objectGroup: 'client-test' });
  // Not usable before Activate.
  await assert.rejects(admin.encrypt(uid, Buffer.alloc(32), { mode: 'gcm' }), (e: unknown) => e instanceof KmipError && e.resultReason === ResultReason.PermissionDenied);
  await admin.activate(uid);
  assert.deepEqual(await admin.locate({ name: 'client-test/v1' }), [uid]);
  assert.deepEqual(await admin.locate({ objectGroup: 'client-test', symmetricKeysOnly: true }), [uid]);
  assert.deepEqual(await admin.locate({ name: 'client-test/v9' }), []);
  assert.deepEqual(await admin.describe(uid), { names: ['client-test/v1'], state: State.Active });
  const attrs = await admin.getAttributes(uid, ['Cryptographic Length', 'Cryptographic Algorithm']);
  assert.deepEqual(
    attrs.map((a) => [a.name, a.value.value]),
    [
      ['Cryptographic Length', 256],
      ['Cryptographic Algorithm', 3],
    ],
  );

  const before = await sessionsInLog();
  const dek = Buffer.from('0123456789abcdef0123456789abcdef');
  const aad = Buffer.from('bound');
  const g = await admin.encrypt(uid, dek, { mode: 'gcm', aad });
  assert.equal(g.tag?.length, 16);
  assert.notDeepEqual(g.data, dek);
  assert.deepEqual(await admin.decrypt(uid, g.data, { mode: 'gcm', iv: g.iv, aad, tag: g.tag! }), dek);
  await assert.rejects(admin.decrypt(uid, g.data, { mode: 'gcm', iv: g.iv, aad: Buffer.from('other'), tag: g.tag! }), /Decrypt failed: General Failure/);
  const c = await admin.encrypt(uid, dek, { mode: 'cbc' });
  assert.equal(c.data.length, 48);
  assert.deepEqual(await admin.decrypt(uid, c.data, { mode: 'cbc', iv: c.iv }), dek);
  for (let i = 0; i < 10; i++) await admin.encrypt(uid, dek, { mode: 'gcm' });
  // Sequential calls reuse one pooled TLS connection: at most one new server session.
  assert.ok((await sessionsInLog()) - before <= 1, 'sequential calls reuse the connection');
});

test('backend: init-key creates <name>/v1, round trip, key_id names the object, second init-key refused', async () => {
  const keyId = await kmipBackend.initKey(options('cluster-kek'), context());
  assert.match(keyId, /^kmip:cluster-kek\/v1:\S+$/);
  const uid = keyId.split(':')[2]!;
  assert.deepEqual(await admin.describe(uid), { names: ['cluster-kek/v1'], state: State.Active });
  await rejectsBackend(kmipBackend.initKey(options('cluster-kek'), context()), 'CONFIG', /already exists \(v1\); use rotate-key/);

  const b = await openBackend('cluster-kek');
  assert.equal(await b.currentKeyId(), keyId);
  assert.equal((b as KmipKek).wrappingMode, 'gcm');
  const dek = Buffer.alloc(32, 7);
  const w = await b.encrypt(dek);
  assert.equal(w.keyId, keyId);
  assert.ok(w.ciphertext.length <= 1024);
  assert.equal(w.ciphertext.includes(dek), false, 'the DEK does not appear in the ciphertext');
  assert.deepEqual(await b.decrypt(w.ciphertext), dek);
  // Each wrap gets a fresh server IV.
  assert.notDeepEqual((await b.encrypt(dek)).ciphertext, w.ciphertext);
});

test('backend: open without a key names init-key; rotate-key without a key is refused', async () => {
  await rejectsBackend(kmipBackend.open(options('no-such-kek'), context()), 'KEY_NOT_FOUND', /no KMIP key "no-such-kek" .*init-key/);
  await rejectsBackend(kmipBackend.rotateKey(options('no-such-kek'), context()), 'KEY_NOT_FOUND', /init-key first/);
});

test('backend: rotate-key adds v2; the running backend picks it up in refresh() and still unwraps v1', async () => {
  const v1Id = await kmipBackend.initKey(options('rotating-kek'), context());
  const b = await openBackend('rotating-kek');
  const old = await b.encrypt(Buffer.alloc(32, 1));
  assert.equal(old.keyId, v1Id);

  const v2Id = await kmipBackend.rotateKey(options('rotating-kek'), context());
  assert.match(v2Id, /^kmip:rotating-kek\/v2:/);
  assert.notEqual(v2Id, v1Id);
  assert.equal(await b.currentKeyId(), v1Id, 'no change before refresh');
  await b.refresh();
  assert.equal(await b.currentKeyId(), v2Id);
  const fresh = await b.encrypt(Buffer.alloc(32, 2));
  assert.equal(fresh.keyId, v2Id);
  assert.deepEqual(await b.decrypt(old.ciphertext), Buffer.alloc(32, 1));
  assert.deepEqual(await b.decrypt(fresh.ciphertext), Buffer.alloc(32, 2));

  // A backend opened later starts at v2 and unwraps v1 ciphertexts it has never seen.
  const v3Id = await kmipBackend.rotateKey(options('rotating-kek'), context());
  const later = await openBackend('rotating-kek');
  assert.equal(await later.currentKeyId(), v3Id);
  assert.deepEqual(await later.decrypt(old.ciphertext), Buffer.alloc(32, 1));
  assert.deepEqual(await later.decrypt(fresh.ciphertext), Buffer.alloc(32, 2));
});

test('backend: the current version reports its Initial Date as creation time, in the plugin metric too, and rotation updates it', async () => {
  const sec = (ms: number): number => Math.floor(ms / 1000) * 1000;
  const t0 = Date.now();
  const v1Id = await kmipBackend.initKey(options('dated-kek'), context());
  const t1 = Date.now();
  const uid1 = v1Id.split(':')[2]!;
  const d1 = await admin.describe(uid1, { dates: true });
  assert.ok(d1.initialDate !== undefined && d1.initialDate >= sec(t0) && d1.initialDate <= t1, `Initial Date ${String(d1.initialDate)} within the init-key call`);
  assert.equal(d1.activationDate, undefined, 'PyKMIP reports no Activation Date');

  const b = await openBackend('dated-kek');
  assert.equal(await b.currentKeyCreatedAt?.(), d1.initialDate);
  const registry = newRegistry();
  const { dir, cleanup } = await makeTempDir('atrest-kmip-dated-');
  const server = await startPluginServer({ listen: `unix://${dir}/kms.sock`, backend: b, metrics: registry, refreshIntervalMs: 100, log: inProcessLogger('kms-plugin') });
  const gauge = async (): Promise<number | undefined> => {
    const m = /^atrest_kms_plugin_current_key_created_timestamp_seconds (\S+)$/m.exec(await registry.metrics());
    return m ? Number(m[1]) : undefined;
  };
  try {
    assert.equal(await gauge(), d1.initialDate / 1000);
    // Initial Date has second precision: make v2's differ from v1's.
    await waitFor('the next second', async () => Math.floor(Date.now() / 1000) > d1.initialDate! / 1000);
    const v2Id = await kmipBackend.rotateKey(options('dated-kek'), context());
    const d2 = await admin.describe(v2Id.split(':')[2]!, { dates: true });
    assert.ok(d2.initialDate !== undefined && d2.initialDate > d1.initialDate);
    await waitFor('the plugin to adopt v2', async () => (await b.currentKeyId()) === v2Id);
    assert.equal(await b.currentKeyCreatedAt?.(), d2.initialDate);
    await waitFor('the creation-time gauge to follow the rotation', async () => (await gauge()) === d2.initialDate! / 1000);
  } finally {
    await server.close();
    await cleanup();
  }
});

test('backend: a version left Pre-Active (failed activation) is stepped over by rotate-key and refresh()', async () => {
  await kmipBackend.initKey(options('halfway-kek'), context());
  const b = await openBackend('halfway-kek');
  const stuck = await admin.createAesKey({ names: ['halfway-kek/v2'], objectGroup: 'halfway-kek' });
  await b.refresh();
  assert.match(await b.currentKeyId(), /^kmip:halfway-kek\/v1:/, 'a Pre-Active version is not used');
  const v3Id = await kmipBackend.rotateKey(options('halfway-kek'), context());
  assert.match(v3Id, /^kmip:halfway-kek\/v3:/);
  await b.refresh();
  assert.equal(await b.currentKeyId(), v3Id);
  assert.deepEqual(await admin.describe(stuck), { names: ['halfway-kek/v2'], state: State.PreActive });
});

test('backend: tampered ciphertexts and foreign objects are INVALID_CIPHERTEXT', async () => {
  await kmipBackend.initKey(options('tamper-kek'), context());
  const b = await openBackend('tamper-kek');
  const w = await b.encrypt(Buffer.alloc(32, 9));
  const last = Buffer.from(w.ciphertext);
  last[last.length - 1]! ^= 0x01;
  await rejectsBackend(b.decrypt(last), 'INVALID_CIPHERTEXT', /rejected the ciphertext/);
  // Flip a bit of the GCM tag (the byte after the IV).
  const tag = Buffer.from(w.ciphertext);
  const uidLen = tag[2]!;
  tag[3 + uidLen + 1 + 16 + 1]! ^= 0x80;
  await rejectsBackend(b.decrypt(tag), 'INVALID_CIPHERTEXT', /rejected the ciphertext/);
  await rejectsBackend(b.decrypt(Buffer.from('k8s:enc:kms:v1:garbage')), 'INVALID_CIPHERTEXT', /not a kmip backend ciphertext/);
  await rejectsBackend(b.decrypt(w.ciphertext.subarray(0, 10)), 'INVALID_CIPHERTEXT', /not a kmip backend ciphertext/);
  // A ciphertext naming an object of another key family is refused before any Decrypt.
  const foreign = await admin.createAesKey({ names: ['someone-else/v1'] });
  const swapped = Buffer.concat([Buffer.from([1, 1, Buffer.byteLength(foreign)]), Buffer.from(foreign), w.ciphertext.subarray(3 + uidLen)]);
  await rejectsBackend(b.decrypt(swapped), 'INVALID_CIPHERTEXT', /not a version of key "tamper-kek"/);
});

test('backend: --kmip-cipher cbc wraps with AES-CBC on the server; GCM ciphertexts still unwrap', async () => {
  await kmipBackend.initKey(options('cbc-kek'), context());
  const gcm = await openBackend('cbc-kek');
  const g = await gcm.encrypt(Buffer.alloc(32, 4));
  const b = await openBackend('cbc-kek', { kmipCipher: 'cbc' });
  assert.equal((b as KmipKek).wrappingMode, 'cbc');
  const w = await b.encrypt(Buffer.alloc(32, 5));
  assert.equal(w.ciphertext[1], 0x02, 'mode byte says CBC');
  assert.deepEqual(await b.decrypt(w.ciphertext), Buffer.alloc(32, 5));
  assert.deepEqual(await b.decrypt(g.ciphertext), Buffer.alloc(32, 4));
});

test('backend: a revoked key and a destroyed key give clear errors', async () => {
  const keyId = await kmipBackend.initKey(options('doomed-kek'), context());
  const uid = keyId.split(':')[2]!;
  const b = await openBackend('doomed-kek');
  const w = await b.encrypt(Buffer.alloc(32, 3));
  await admin.revoke(uid, RevocationReasonCode.CessationOfOperation);
  // Revoked (Deactivated): the key material is still on the server, so KEY_RETIRED (gRPC FailedPrecondition), not lost.
  await rejectsBackend(b.encrypt(Buffer.alloc(32)), 'KEY_RETIRED', /KMIP key doomed-kek\/v1 \(unique identifier \S+\) \(key_id kmip:doomed-kek\/v1:\S+\) is Deactivated \(retired or revoked\) and cannot be used/);
  await rejectsBackend(b.decrypt(w.ciphertext), 'KEY_RETIRED', /doomed-kek\/v1 .* is Deactivated .*ask the server's administrator/);
  await rejectsBackend(kmipBackend.open(options('doomed-kek'), context()), 'KEY_NOT_FOUND', /no Active version of KMIP key "doomed-kek" \(v1 Deactivated\)/);
  await admin.destroy(uid);
  // Destroyed: gone for good (KEY_NOT_FOUND: undecryptable).
  await rejectsBackend(b.decrypt(w.ciphertext), 'KEY_NOT_FOUND', /doomed-kek\/v1 .* does not exist on the KMIP server \(destroyed\?\)/);
});

test('TLS: a client certificate from another CA is rejected; so is a server the CA does not vouch for', async () => {
  const other = await makeCa(srv.dir, 'other');
  const stranger = await makeLeaf(srv.dir, other, 'stranger', 'client', 'stranger');
  await rejectsBackend(
    kmipBackend.open(options('cluster-kek', { kmipCert: stranger.cert, kmipKey: stranger.key }), context()),
    'UNAVAILABLE',
    /KMIP server unavailable .*TLS with KMIP server 127\.0\.0\.1:\d+ failed: the server refused the handshake \(alert: unknown ca\)/,
  );
  await rejectsBackend(
    kmipBackend.open(options('cluster-kek', { kmipCa: other.cert }), context()),
    'UNAVAILABLE',
    /TLS with KMIP server .* failed: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN): the server certificate does not verify against the CA/,
  );
  // A certificate of the right CA without clientAuth (the server's own) is refused too.
  await rejectsBackend(
    kmipBackend.open(options('cluster-kek', { kmipCert: srv.pki.serverCert, kmipKey: srv.pki.serverKey }), context()),
    'UNAVAILABLE',
    /the server refused the handshake \(alert: unsupported certificate\)/,
  );
  // The right certificates work, so the failures above are the certificates' doing.
  await (await openBackend('cluster-kek')).encrypt(Buffer.alloc(32));
});

test('health and metrics: check() does a real round trip; latency and errors are counted', async () => {
  const ctx = context();
  const b = (await openBackend('cluster-kek', {}, ctx)) as KmipKek;
  await b.check();
  await b.decrypt(Buffer.from([1, 1, 3, 0x39, 0x39, 0x39, 1, 0, 16, ...Buffer.alloc(16), 1])).catch(() => undefined);
  const text = await ctx.metrics!.metrics();
  assert.match(text, /atrest_kmip_request_duration_seconds_count\{operation="Encrypt"\} [1-9]/);
  assert.match(text, /atrest_kmip_request_duration_seconds_count\{operation="Decrypt"\} [1-9]/);
  assert.match(text, /atrest_kmip_request_errors_total\{operation="GetAttributes",reason="Item Not Found"\} 1/);
});

test('plugin socket (atrest kms-plugin --backend kmip, env vars): v1beta1 and v2 round trips, rotate-key picked up while running, /metrics creation time follows', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-kmip-plugin-');
  const env = {
    ATREST_KMS_PLUGIN_BACKEND: 'kmip',
    ATREST_KMIP_ENDPOINT: srv.endpoint,
    ATREST_KMIP_CA: srv.pki.client.caPath,
    ATREST_KMIP_CERT: srv.pki.client.certPath,
    ATREST_KMIP_KEY: srv.pki.client.keyPath,
    ATREST_KMIP_KEY_NAME: 'plugin-kek',
  };
  const socket = `${dir}/kms.sock`;
  let plugin: PluginProcess | undefined;
  const client = TestKmsClient.forPath(socket);
  try {
    const init = await runAtrest(['kms-plugin', 'init-key'], env);
    assert.equal(init.code, 0, init.stderr);
    const v1Id = init.stdout.trim();
    assert.match(v1Id, /^kmip:plugin-kek\/v1:/);

    const healthPort = await freePort();
    plugin = new PluginProcess(['--listen', `unix://${socket}`, '--refresh-interval', '200', '--health-listen', `127.0.0.1:${healthPort}`], env);
    await plugin.waitForEvent('start');
    /** The creation-time gauge the running plugin serves, in seconds. */
    const createdGauge = async (): Promise<number | undefined> => {
      const m = /^atrest_kms_plugin_current_key_created_timestamp_seconds (\S+)$/m.exec(await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text());
      return m ? Number(m[1]) : undefined;
    };
    const initialDateOf = async (keyId: string): Promise<number> => (await admin.describe(keyId.split(':')[2]!, { dates: true })).initialDate! / 1000;
    assert.equal(await createdGauge(), await initialDateOf(v1Id));

    assert.equal((await client.version()).runtimeName, 'atrest');
    const v1Plain = Buffer.from('a v1beta1 DEK, wrapped by the KMIP server');
    const v1 = await client.v1Encrypt(v1Plain);
    assert.deepEqual(Buffer.from((await client.v1Decrypt(v1.cipher)).plain), v1Plain);

    const st = await client.status();
    assert.equal(st.healthz, 'ok');
    assert.equal(st.keyId, v1Id);
    const seed = Buffer.alloc(32, 0x5a);
    const w = await client.encrypt(seed);
    assert.equal(w.keyId, v1Id);
    assert.deepEqual(Buffer.from((await client.decrypt(w.ciphertext, w.keyId, 'v2', w.annotations)).plaintext), seed);

    const rot = await runAtrest(['kms-plugin', 'rotate-key'], env);
    assert.equal(rot.code, 0, rot.stderr);
    const v2Id = rot.stdout.trim();
    assert.match(v2Id, /^kmip:plugin-kek\/v2:/);
    await waitFor('Status to report the rotated key_id', async () => (await client.status()).keyId === v2Id);
    const v2Created = await initialDateOf(v2Id);
    await waitFor('the creation-time gauge to show v2', async () => (await createdGauge()) === v2Created);
    const w2 = await client.encrypt(seed);
    assert.equal(w2.keyId, v2Id);
    // Old ciphertexts of both APIs still unwrap.
    assert.deepEqual(Buffer.from((await client.decrypt(w.ciphertext, w.keyId, 'v2', w.annotations)).plaintext), seed);
    assert.deepEqual(Buffer.from((await client.v1Decrypt(v1.cipher)).plain), v1Plain);
    // A tampered ciphertext is InvalidArgument at the socket.
    const bad = Buffer.from(w2.ciphertext);
    bad[bad.length - 1]! ^= 1;
    await assert.rejects(client.decrypt(bad, w2.keyId, 'v2', w2.annotations), (e: unknown) => grpcCodeOf(e) === 3);
  } finally {
    client.close();
    await plugin?.stop();
    await cleanup();
  }
});

test('server stopped and restarted: Unavailable at the plugin socket while down, the same backend recovers', async () => {
  const b = (await openBackend('cluster-kek')) as KmipKek;
  const { dir, cleanup } = await makeTempDir('atrest-kmip-restart-');
  const server = await startPluginServer({ listen: `unix://${dir}/kms.sock`, backend: b, refreshIntervalMs: 100, healthSuccessTtlMs: 100, healthFailureTtlMs: 100, log: inProcessLogger('kms-plugin') });
  const client = TestKmsClient.forPath(`${dir}/kms.sock`);
  try {
    const seed = Buffer.alloc(32, 6);
    const w = await client.encrypt(seed);
    const direct = await b.encrypt(seed);
    await srv.stop();
    await rejectsBackend(b.encrypt(Buffer.alloc(32)), 'UNAVAILABLE', /KMIP server unavailable .*ECONNREFUSED/);
    await rejectsBackend(b.decrypt(direct.ciphertext), 'UNAVAILABLE', /ECONNREFUSED/);
    await assert.rejects(b.check(), /unavailable/);
    // gRPC status 14 (Unavailable) to the API server.
    await assert.rejects(client.encrypt(seed), (e: unknown) => grpcCodeOf(e) === 14);
    await assert.rejects(client.decrypt(w.ciphertext, w.keyId), (e: unknown) => grpcCodeOf(e) === 14);
    await waitFor('Status healthz to report the outage', async () => (await client.status()).healthz !== 'ok');

    await srv.start();
    await waitFor('the plugin to unwrap again', async () => Buffer.from((await client.decrypt(w.ciphertext, w.keyId)).plaintext).equals(seed), 30_000, 200);
    await waitFor('Status healthz ok again', async () => (await client.status()).healthz === 'ok');
    assert.deepEqual(await b.decrypt(direct.ciphertext), seed);
    const again = await client.encrypt(seed);
    assert.deepEqual(Buffer.from((await client.decrypt(again.ciphertext, again.keyId)).plaintext), seed);
  } finally {
    client.close();
    await server.close();
    await cleanup();
  }
});
