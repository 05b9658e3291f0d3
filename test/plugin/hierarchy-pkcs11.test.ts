// The key hierarchy with the pkcs11 backend and a real SoftHSM token (a copy of the fixture token
// that holds the keys of the values written before the hierarchy): `atrest kms-plugin` round trips,
// values from before, rotate-key followed, a cold start; and, in-process, an outage under load.
// SoftHSM runs inside the plugin process and cannot be stopped or frozen, and p11-kit 0.24 (Debian
// 12), which can put it in another process, forwards neither AES-GCM nor AES key wrap
// (pkcs11-remote.test.ts), so the outage is injected between the hierarchy and the real Pkcs11Kek
// (test/helpers/faulty-kek.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { newRegistry } from '../../src/metrics.js';
import { BackendError, type BackendOptions } from '../../src/plugin/backend.js';
import { pkcs11Backend } from '../../src/plugin/backends/pkcs11.js';
import { startHealthServer } from '../../src/plugin/health-server.js';
import { LOCAL_KEK_ANNOTATION } from '../../src/plugin/hierarchy/envelope.js';
import { HierarchyKek } from '../../src/plugin/hierarchy/kek.js';
import { startPluginServer } from '../../src/plugin/server.js';
import { FaultyKek } from '../helpers/faulty-kek.js';
import { assertFixtureDecrypts, loadFixture, sample, startLoad, type HierarchyFixture } from '../helpers/hierarchy.js';
import { PluginProcess, TestKmsClient, runAtrest, waitFor } from '../helpers/plugin.js';
import { freePort } from '../helpers/pykmip.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';
import { inProcessLogger, registerTestSecret } from '../helpers/test-log.js';

const fixture = loadFixture<HierarchyFixture & { tokenLabel: string; pin: string; keyLabel: string }>('pkcs11');
registerTestSecret(fixture.pin, 'pkcs11-pin');
const log = inProcessLogger('kms-plugin');
let hsm: SoftHsm;

before(async () => {
  hsm = await createSoftHsm({ fromTokens: join(fixture.dir, 'tokens'), tokenLabel: fixture.tokenLabel, pin: fixture.pin });
});

after(async () => {
  await hsm?.cleanup();
});

const options = (keyLabel = fixture.keyLabel): BackendOptions => ({
  pkcs11Module: hsm.modulePath, pkcs11TokenLabel: hsm.token.label, pkcs11PinFile: hsm.token.pinFile, pkcs11KeyLabel: keyLabel,
});
const env = (keyLabel = fixture.keyLabel): NodeJS.ProcessEnv => ({
  ...hsm.env,
  ATREST_KMS_PLUGIN_BACKEND: 'pkcs11',
  ATREST_PKCS11_MODULE: hsm.modulePath,
  ATREST_PKCS11_TOKEN_LABEL: hsm.token.label,
  ATREST_PKCS11_PIN_FILE: hsm.token.pinFile,
  ATREST_PKCS11_KEY_LABEL: keyLabel,
});

let sockets = 0;
async function startPlugin(keyLabel?: string): Promise<{ client: TestKmsClient; metrics(): Promise<string>; stop(): Promise<void> }> {
  const socket = join(hsm.dir, `kms-${sockets++}.sock`);
  const port = await freePort();
  const plugin = new PluginProcess(['--listen', `unix://${socket}`, '--health-listen', `127.0.0.1:${port}`, '--refresh-interval', '200'], env(keyLabel));
  await plugin.waitForEvent('start');
  const client = TestKmsClient.forPath(socket);
  return {
    client,
    metrics: async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text(),
    stop: async () => { client.close(); assert.equal(await plugin.stop(), 0); },
  };
}

test('pkcs11: values from before the hierarchy decrypt; round trips under the remote key_id; rotate-key followed; a restarted plugin decrypts 1,000 kms v1 values with one unwrap', async () => {
  const p = await startPlugin();
  const values: Array<{ dek: Buffer; cipher: Uint8Array }> = [];
  let seed: Buffer;
  let v2: Awaited<ReturnType<TestKmsClient['encrypt']>>;
  try {
    await assertFixtureDecrypts(p.client, fixture);
    assert.equal((await p.client.status()).keyId, fixture.keyIds[1]);
    seed = randomBytes(32);
    v2 = await p.client.encrypt(seed);
    assert.equal(v2.keyId, fixture.keyIds[1]);
    assert.deepEqual(Object.keys(v2.annotations), [LOCAL_KEK_ANNOTATION]);
    assert.deepEqual(Buffer.from((await p.client.decrypt(v2.ciphertext, v2.keyId, 'v2', v2.annotations)).plaintext), seed);
    for (let i = 0; i < 1000; i += 100) {
      values.push(...await Promise.all(Array.from({ length: 100 }, async () => {
        const dek = randomBytes(32);
        return { dek, cipher: (await p.client.v1Encrypt(dek)).cipher };
      })));
    }
    assert.equal(sample(await p.metrics(), 'atrest_kms_plugin_remote_kek_calls_total{operation="wrap",outcome="ok"}'), 1);

    const rot = await runAtrest(['kms-plugin', 'rotate-key'], env());
    assert.equal(rot.code, 0, rot.stderr);
    const v3 = rot.stdout.trim();
    await waitFor('Status to report the rotated key', async () => (await p.client.status()).keyId === v3);
    assert.equal((await p.client.encrypt(seed)).keyId, v3);
    assert.deepEqual(Buffer.from((await p.client.decrypt(v2.ciphertext, v2.keyId, 'v2', v2.annotations)).plaintext), seed);
  } finally {
    await p.stop();
  }
  const q = await startPlugin();
  try {
    await Promise.all(values.map(async (v) => assert.deepEqual(Buffer.from((await q.client.v1Decrypt(v.cipher)).plain), v.dek)));
    assert.deepEqual(Buffer.from((await q.client.decrypt(v2.ciphertext, v2.keyId, 'v2', v2.annotations)).plaintext), seed);
    assert.equal(sample(await q.metrics(), 'atrest_kms_plugin_remote_kek_calls_total{operation="unwrap",outcome="ok"}'), 1, 'one unwrap: the v2 seed and the 1,000 v1 values share the first process\'s local KEK');
    await assertFixtureDecrypts(q.client, fixture);
  } finally {
    await q.stop();
  }
});

test('pkcs11 outage (injected) under load: every call answered, Status ok, /healthz degraded naming the token; a start during the outage fails closed naming it', async () => {
  const init = await pkcs11Backend.initKey(options('outage-kek'), { log });
  const remote = new FaultyKek(await pkcs11Backend.open(options('outage-kek'), { log }));
  const endpoint = pkcs11Backend.describeRemote!(options('outage-kek'));
  const registry = newRegistry();
  const h = await HierarchyKek.open(remote, { maxAgeMs: 1000, maxUses: 1_000_000, cacheSize: 10, remoteTimeoutMs: 500 }, { log, metrics: registry, endpoint });
  const socket = join(hsm.dir, 'outage.sock');
  const server = await startPluginServer({ listen: `unix://${socket}`, backend: h, metrics: registry, refreshIntervalMs: 100, log });
  const port = await freePort();
  const health = await startHealthServer({ listen: `127.0.0.1:${port}`, socket: server.address, metrics: registry, log, degraded: () => h.degraded() });
  const client = TestKmsClient.forPath(socket);
  const load = startLoad(client);
  try {
    assert.equal((await client.status()).keyId, init);
    await waitFor('load to run', async () => load.counts.v1 > 20 && load.counts.v2 > 20);
    for (const mode of ['down', 'frozen'] as const) {
      remote.mode = mode;
      const r = await waitFor(`/healthz to report the ${mode} token`, async () => {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        return res.status === 503 ? res.text() : undefined;
      });
      assert.match(r, /^degraded: remote KEK \(PKCS#11 token "atrest-fixture" \(module \S+softhsm2\.so\), key "outage-kek"\) unavailable/);
      const at = { ...load.counts };
      await new Promise((resolve) => setTimeout(resolve, 1500)); // past --local-kek-max-age
      await waitFor('the load to go on', async () => load.counts.v1 > at.v1 + 20 && load.counts.v2 > at.v2 + 20);
      assert.equal((await client.status()).healthz, 'ok', 'v2 Status stays ok');
      assert.equal((await fetch(`http://127.0.0.1:${port}/livez`)).status, 200);
      if (mode === 'down') {
        await assert.rejects(HierarchyKek.open(remote, { maxAgeMs: 1000, maxUses: 10, cacheSize: 10, remoteTimeoutMs: 500 }, { log, endpoint }), (e: unknown) => {
          assert.ok(e instanceof BackendError && e.code === 'UNAVAILABLE');
          assert.ok(e.message.includes(`cannot make the first local KEK: the remote KEK (${endpoint})`), e.message);
          return true;
        });
      }
      remote.recover();
      await waitFor('/healthz ok again', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200);
    }
    const counts = await load.stop();
    console.log(`RELIABILITY ${JSON.stringify({ section: 'remote-kek-outage', backend: 'pkcs11 (injected)', v1RoundTrips: counts.v1, v2RoundTrips: counts.v2, failed: counts.failures.length, plaintext: counts.plaintextInCiphertext })}`);
    assert.deepEqual(counts.failures, []);
    assert.equal(counts.plaintextInCiphertext, 0);
    const metrics = await registry.metrics();
    assert.ok((sample(metrics, 'atrest_kms_plugin_remote_kek_calls_total{operation="refresh",outcome="unavailable"}') ?? 0) > 0);
    assert.ok((sample(metrics, 'atrest_kms_plugin_local_kek_rotations_total{reason="max_age"}') ?? 0) >= 1);
  } finally {
    await load.stop();
    client.close();
    await health.close();
    await server.close();
    await h.close();
  }
});
