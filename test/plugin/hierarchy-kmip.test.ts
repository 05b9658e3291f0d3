// The key hierarchy with the kmip backend against the real PyKMIP server (one instance for this
// file, started from the fixture database that holds the keys of the values written before the
// hierarchy), through `atrest kms-plugin` processes: round trips, values from before, remote key
// rotation, tampering, a cold start, and outages (the server frozen with SIGSTOP, then stopped)
// under a steady load, with a restart during the outage.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { LOCAL_KEK_ANNOTATION } from '../../src/plugin/hierarchy/envelope.js';
import { openStore } from '../../src/storage/open.js';
import type { StatusReport } from '../../src/tools/status.js';
import { assertFixtureDecrypts, loadFixture, sample, startLoad, type HierarchyFixture } from '../helpers/hierarchy.js';
import { PluginProcess, TestKmsClient, grpcCodeOf, makeTempDir, runAtrest, waitFor } from '../helpers/plugin.js';
import { freePort, startPykmip, type PykmipServer } from '../helpers/pykmip.js';

const fixture = loadFixture<HierarchyFixture & { keyName: string }>('kmip');
let srv: PykmipServer;
let tmp: { dir: string; cleanup: () => Promise<void> };

before(async () => {
  srv = await startPykmip({ database: join(fixture.dir, 'pykmip.db') });
  tmp = await makeTempDir('atrest-hierarchy-kmip-');
});

after(async () => {
  await srv?.cleanup();
  await tmp?.cleanup();
});

const env = (keyName = fixture.keyName): NodeJS.ProcessEnv => ({
  ATREST_KMS_PLUGIN_BACKEND: 'kmip',
  ATREST_KMIP_ENDPOINT: srv.endpoint,
  ATREST_KMIP_CA: srv.pki.client.caPath,
  ATREST_KMIP_CERT: srv.pki.client.certPath,
  ATREST_KMIP_KEY: srv.pki.client.keyPath,
  ATREST_KMIP_KEY_NAME: keyName,
});

interface Running { plugin: PluginProcess; client: TestKmsClient; health: string; metrics(): Promise<string>; stop(): Promise<void> }

let sockets = 0;
async function startPlugin(args: string[] = [], keyName?: string): Promise<Running> {
  const socket = join(tmp.dir, `kms-${sockets++}.sock`);
  const port = await freePort();
  const plugin = new PluginProcess(['--listen', `unix://${socket}`, '--health-listen', `127.0.0.1:${port}`, ...args], env(keyName));
  await plugin.waitForEvent('start');
  const client = TestKmsClient.forPath(socket);
  const health = `http://127.0.0.1:${port}`;
  return {
    plugin, client, health,
    metrics: async () => (await fetch(`${health}/metrics`)).text(),
    stop: async () => { client.close(); assert.equal(await plugin.stop(), 0); },
  };
}

const remoteUnavailable = (metrics: string): number =>
  ['wrap', 'unwrap', 'refresh', 'verify'].reduce((n, op) => n + (sample(metrics, `atrest_kms_plugin_remote_kek_calls_total{operation="${op}",outcome="unavailable"}`) ?? 0), 0);

const get = async (url: string): Promise<{ status: number; text: string }> => {
  const res = await fetch(url);
  return { status: res.status, text: await res.text() };
};

test('kmip: values from before the hierarchy decrypt; v1 and v2 round trips carry the wrapped local KEK; key_id is the remote version; tampering is rejected; rotate-key is followed', async () => {
  const p = await startPlugin();
  try {
    await assertFixtureDecrypts(p.client, fixture);
    const st = await p.client.status();
    assert.equal(st.healthz, 'ok');
    assert.equal(st.keyId, fixture.keyIds[1], 'key_id is the remote key version, as before the hierarchy');

    const seed = randomBytes(32);
    const a = await p.client.encrypt(seed);
    assert.equal(a.keyId, fixture.keyIds[1]);
    assert.deepEqual(Object.keys(a.annotations), [LOCAL_KEK_ANNOTATION]);
    assert.ok(a.ciphertext.length < 100 && !Buffer.from(a.ciphertext).includes(seed));
    assert.deepEqual(Buffer.from((await p.client.decrypt(a.ciphertext, a.keyId, 'v2', a.annotations)).plaintext), seed);
    const dek = randomBytes(32);
    const v1 = await p.client.v1Encrypt(dek);
    assert.deepEqual(Buffer.from((await p.client.v1Decrypt(v1.cipher)).plain), dek);

    // Tampering: without its annotation, with another value's, with an edited one; v1 with an edited wrapped local KEK.
    const b = await p.client.encrypt(randomBytes(32));
    const rejected = async (call: Promise<unknown>, re: RegExp): Promise<void> => {
      await assert.rejects(call, (e: Error & { details?: string }) => {
        assert.equal(grpcCodeOf(e), GrpcStatus.INVALID_ARGUMENT, e.message);
        assert.match(e.details ?? '', re);
        return true;
      });
    };
    await rejected(p.client.decrypt(a.ciphertext, a.keyId), /annotation local-kek\.atrest\.dev .* is missing/);
    assert.deepEqual(a.annotations[LOCAL_KEK_ANNOTATION], b.annotations[LOCAL_KEK_ANNOTATION], 'values under one local KEK carry the same wrapped bytes');
    const edited = Buffer.from(a.annotations[LOCAL_KEK_ANNOTATION]!);
    edited[edited.length - 1]! ^= 1;
    await rejected(p.client.decrypt(a.ciphertext, a.keyId, 'v2', { [LOCAL_KEK_ANNOTATION]: edited }), /rejected the ciphertext|not authenticate/);
    const v1Edited = Buffer.from(v1.cipher);
    v1Edited[10]! ^= 1;
    await rejected(p.client.v1Decrypt(v1Edited), /.+/);

    const other = await startPlugin();
    try {
      const c = await other.client.encrypt(randomBytes(32));
      await rejected(p.client.decrypt(a.ciphertext, a.keyId, 'v2', c.annotations), /does not authenticate under local KEK/);
      assert.deepEqual(Buffer.from((await other.client.decrypt(a.ciphertext, a.keyId, 'v2', a.annotations)).plaintext), seed, 'another process decrypts it');
    } finally {
      await other.stop();
    }

    const rot = await runAtrest(['kms-plugin', 'rotate-key'], env());
    assert.equal(rot.code, 0, rot.stderr);
    const v3 = rot.stdout.trim();
    await waitFor('Status to report the rotated remote key', async () => (await p.client.status()).keyId === v3);
    assert.equal((await p.client.encrypt(seed)).keyId, v3);
    assert.deepEqual(Buffer.from((await p.client.decrypt(a.ciphertext, a.keyId, 'v2', a.annotations)).plaintext), seed);
    await assertFixtureDecrypts(p.client, fixture);
    assert.match(await p.metrics(), /atrest_kms_plugin_local_kek_rotations_total\{reason="remote_key_changed"\} 1/);
  } finally {
    await p.stop();
  }
});

test('kmip cold start: 2,000 kms v1 values written by one process decrypt after a restart with one remote unwrap', async () => {
  const init = await runAtrest(['kms-plugin', 'init-key'], env('cold-kek'));
  assert.equal(init.code, 0, init.stderr);
  const writer = await startPlugin([], 'cold-kek');
  const values: Array<{ dek: Buffer; cipher: Uint8Array }> = [];
  try {
    for (let i = 0; i < 2000; i += 100) {
      values.push(...await Promise.all(Array.from({ length: 100 }, async () => {
        const dek = randomBytes(32);
        return { dek, cipher: (await writer.client.v1Encrypt(dek)).cipher };
      })));
    }
    assert.equal(sample(await writer.metrics(), 'atrest_kms_plugin_remote_kek_calls_total{operation="wrap",outcome="ok"}'), 1, 'one remote wrap for 2,000 Encrypts');
  } finally {
    await writer.stop();
  }
  const reader = await startPlugin([], 'cold-kek');
  try {
    for (let i = 0; i < values.length; i += 100) {
      await Promise.all(values.slice(i, i + 100).map(async (v) => assert.deepEqual(Buffer.from((await reader.client.v1Decrypt(v.cipher)).plain), v.dek)));
    }
    assert.equal(sample(await reader.metrics(), 'atrest_kms_plugin_remote_kek_calls_total{operation="unwrap",outcome="ok"}'), 1, 'one remote unwrap for 2,000 Decrypts');
  } finally {
    await reader.stop();
  }
});

test('kmip outage under load: frozen (SIGSTOP) then stopped, every Encrypt and Decrypt answered, Status ok, /healthz degraded, /livez ok, metrics and logs say so; a plugin started meanwhile fails closed naming the server', async () => {
  const statusConfig = join(tmp.dir, 'identity.yaml');
  const statusData = join(tmp.dir, 'status-data');
  writeFileSync(statusConfig, 'apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n');
  await (await openStore({ dataDir: statusData })).close();
  const p = await startPlugin(['--local-kek-max-age', '2s', '--refresh-interval', '300', '--remote-kek-timeout', '1s', '--kmip-timeout-ms', '800']);
  const load = startLoad(p.client);
  let restarted: PluginProcess | undefined;
  const statusNotOk: string[] = [];
  let polling = true;
  const statusPoll = (async () => {
    while (polling) {
      const s = await p.client.status().catch((e: Error) => ({ healthz: e.message }));
      if (s.healthz !== 'ok') statusNotOk.push(s.healthz);
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  const degradedSeen = async (): Promise<void> => {
    const h = await waitFor('/healthz to report the outage', async () => {
      const r = await get(`${p.health}/healthz`);
      return r.status === 503 ? r : undefined;
    });
    assert.match(h.text, new RegExp(`^degraded: remote KEK \\(KMIP server ${srv.endpoint.replace(/\./g, '\\.')}, key "fixture-kek"\\) unavailable for \\d+s`));
    assert.equal((await get(`${p.health}/livez`)).status, 200);
    assert.equal(sample(await p.metrics(), 'atrest_kms_plugin_remote_kek_up'), 0);
  };
  try {
    await waitFor('load to run', async () => load.counts.v1 > 20 && load.counts.v2 > 20);
    srv.freeze();
    await degradedSeen();
    const frozenAt = { ...load.counts };
    await waitFor('the load to go on while frozen past max-age', async () => load.counts.v2 > frozenAt.v2 + 50 && (await p.metrics()).includes('atrest_kms_plugin_local_kek_overdue 1'), 15_000);
    srv.thaw();
    await waitFor('/healthz ok after the thaw', async () => (await get(`${p.health}/healthz`)).status === 200, 20_000, 200);

    await srv.stop();
    await degradedSeen();
    restarted = new PluginProcess(['--listen', `unix://${join(tmp.dir, 'during-outage.sock')}`], env());
    assert.notEqual(await restarted.exited, 0, 'a plugin started during the outage does not serve');
    const why = restarted.stderrLines.join('\n');
    assert.match(why, new RegExp(`cannot open the remote KEK \\(KMIP server ${srv.endpoint.replace(/\./g, '\\.')}, key "fixture-kek"\\)`));
    // `atrest status --kms-plugin-health` shows it (and exits 3: a plugin that is not healthy makes the check incomplete).
    const st = await runAtrest(['status', '--encryption-provider-config', statusConfig, '--data-dir', statusData, '--no-verify', '--kms-plugin-health', p.health.slice('http://'.length), '-o', 'json']);
    assert.equal(st.code, 3, st.stderr);
    const plugin = (JSON.parse(st.stdout) as StatusReport).plugins[0]!;
    assert.equal(plugin.healthy, false);
    assert.match(plugin.detail, /^degraded: remote KEK \(KMIP server .*\) unavailable for \d+s/);
    assert.equal(plugin.remoteKek?.up, false);
    const stoppedAt = { ...load.counts };
    await waitFor('the load to go on while stopped', async () => load.counts.v1 > stoppedAt.v1 + 50 && load.counts.v2 > stoppedAt.v2 + 50, 15_000);
    await new Promise((r) => setTimeout(r, 3000)); // past --local-kek-max-age again, still down
    await srv.start();
    await waitFor('/healthz ok after the server is back', async () => (await get(`${p.health}/healthz`)).status === 200, 30_000, 200);
    await waitFor('a new local KEK once the remote is back', async () => /atrest_kms_plugin_local_kek_overdue 0/.test(await p.metrics()), 10_000);
  } catch (err) {
    srv.thaw();
    await srv.start().catch(() => undefined);
    polling = false;
    await statusPoll;
    await load.stop();
    await restarted?.stop();
    await p.stop().catch(() => undefined);
    throw err;
  }
  polling = false;
  await statusPoll;
  const counts = await load.stop();
  try {
    const m = await p.metrics();
    console.log(`RELIABILITY ${JSON.stringify({
      section: 'remote-kek-outage', backend: 'kmip', v1RoundTrips: counts.v1, v2RoundTrips: counts.v2, failed: counts.failures.length, plaintext: counts.plaintextInCiphertext,
      statusNotOk: statusNotOk.length, remoteUnavailableCalls: remoteUnavailable(m), localKekRotations: sample(m, 'atrest_kms_plugin_local_kek_rotations_total{reason="max_age"}') ?? 0,
    })}`);
    assert.deepEqual(counts.failures, [], 'every call answered');
    assert.equal(counts.plaintextInCiphertext, 0);
    assert.deepEqual(statusNotOk, [], 'v2 Status stayed ok (kube-apiserver keeps writing)');
    const metrics = await p.metrics();
    assert.ok((sample(metrics, 'atrest_kms_plugin_remote_kek_calls_total{operation="refresh",outcome="unavailable"}') ?? 0) > 0);
    assert.ok((sample(metrics, 'atrest_kms_plugin_local_kek_rotations_total{reason="max_age"}') ?? 0) >= 1);
    const events = p.plugin.logs.map((l) => l.event);
    assert.ok(events.filter((e) => e === 'remote-kek-unavailable').length >= 2, 'each outage logged');
    assert.ok(events.includes('remote-kek-recovered') && events.includes('local-kek-overdue'));
    // A value written during the outage decrypts in a fresh process (its local KEK was wrapped remotely).
    const w = await p.client.encrypt(Buffer.alloc(32, 3));
    const fresh = await startPlugin();
    try {
      assert.deepEqual(Buffer.from((await fresh.client.decrypt(w.ciphertext, w.keyId, 'v2', w.annotations)).plaintext), Buffer.alloc(32, 3));
    } finally {
      await fresh.stop();
    }
  } finally {
    await p.stop();
  }
});
