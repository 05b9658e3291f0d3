// Retiring KEK versions of the kmip backend on a real KMIP server (Debian's PyKMIP): Revoke with
// reason Superseded makes the version Deactivated; the server then refuses it, and there is no
// way back (no restore-key for kmip) — but the key material is still there, so Decrypt answers
// FailedPrecondition (needs a retired version), not a loss; a running `atrest kms-plugin` (key hierarchy) that did not
// make the change stops unwrapping with it at its next refresh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BackendError, type BackendOptions } from '../../src/plugin/backend.js';
import { kmipBackend } from '../../src/plugin/backends/kmip.js';
import { newRegistry } from '../../src/metrics.js';
import { startPykmip, type PykmipServer } from '../helpers/pykmip.js';
import * as grpc from '@grpc/grpc-js';
import { PluginProcess, TestKmsClient, grpcCodeOf, makeTempDir, runAtrest, waitFor } from '../helpers/plugin.js';
import { inProcessLogger } from '../helpers/test-log.js';

let srv: PykmipServer;
const context = () => ({ log: inProcessLogger('kms-plugin'), metrics: newRegistry() });

before(async () => {
  srv = await startPykmip();
});

after(async () => {
  await srv?.cleanup();
});

function options(keyName: string): BackendOptions {
  return { kmipEndpoint: srv.endpoint, kmipCa: srv.pki.client.caPath, kmipCert: srv.pki.client.certPath, kmipKey: srv.pki.client.keyPath, kmipKeyName: keyName };
}

test('kmip: a retired (revoked) version is Deactivated and refused by the server; the current one cannot be retired; there is no restore', async () => {
  const o = options('retire-kek');
  const v1 = await kmipBackend.initKey(o, context());
  const kek = await kmipBackend.open(o, context());
  try {
    const dek = randomBytes(32);
    const old = await kek.encrypt(dek);
    const v2 = await kmipBackend.rotateKey(o, context());
    await kek.refresh();
    const listed = await kmipBackend.listKeys!(o, context());
    assert.deepEqual(listed.map((v) => [v.keyId, v.state]), [[v1, 'active'], [v2, 'current']]);
    assert.ok(listed.every((v) => typeof v.createdAt === 'number' && v.createdAt > 0), 'PyKMIP reports the Initial Date');

    await assert.rejects(kmipBackend.retireKey!(o, context(), v2), /is the current version: it cannot be retired/);
    await assert.rejects(kmipBackend.retireKey!(o, context(), 'kmip:retire-kek/v7:nope'), (e) => e instanceof BackendError && e.code === 'KEY_NOT_FOUND');
    assert.equal((await kmipBackend.retireKey!(o, context(), v1)).state, 'retired');
    assert.equal((await kmipBackend.retireKey!(o, context(), v1)).state, 'retired', 'retiring again is a no-op');
    assert.deepEqual((await kmipBackend.listKeys!(o, context())).map((v) => v.state), ['retired', 'current']);
    // What a running backend learns at its refresh (the key hierarchy acts on it), without the server.
    assert.deepEqual([...kek.usableKeyIds!()].sort(), [v1, v2].sort());
    await kek.refresh();
    assert.deepEqual([...kek.usableKeyIds!()], [v2]);
    assert.equal(kek.wrappedBy!(old.ciphertext)?.keyId, v1);
    assert.match(kek.wrappedBy!(old.ciphertext)?.refusal?.message ?? '', /retire-kek\/v1 \(unique identifier .*\) \(key_id kmip:retire-kek\/v1:.*\) is Deactivated \(retired or revoked\)/);

    await assert.rejects(kek.decrypt(old.ciphertext), (e: Error) => {
      // KEY_RETIRED (gRPC FailedPrecondition): the key material is still on the server, so the values are not lost;
      // the message says atrest cannot restore it and who may still help.
      assert.ok(e instanceof BackendError && e.code === 'KEY_RETIRED', String(e));
      assert.match(e.message, /retire-kek\/v1 .* is Deactivated \(retired or revoked\) and cannot be used: atrest cannot restore it \(KMIP has no way back from Deactivated\), but its key material is still on the KMIP server.*ask the server's administrator/);
      return true;
    });
    const fresh = await kek.encrypt(dek);
    assert.equal(fresh.keyId, v2);
    assert.deepEqual(await kek.decrypt(fresh.ciphertext), dek);
    assert.equal(kmipBackend.restoreKey, undefined);
  } finally {
    await kek.close();
  }
  const flags = ['--backend', 'kmip', '--kmip-endpoint', srv.endpoint, '--kmip-ca', srv.pki.client.caPath, '--kmip-cert', srv.pki.client.certPath, '--kmip-key', srv.pki.client.keyPath, '--kmip-key-name', 'retire-kek'];
  const restore = await runAtrest(['kms-plugin', 'restore-key', ...flags, '--key-id', v1]);
  assert.notEqual(restore.code, 0);
  assert.match(restore.stderr, /--backend kmip: a retired version cannot be restored \(KMIP has no way back from Deactivated\)/);
  const table = await runAtrest(['kms-plugin', 'list-keys', ...flags]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, new RegExp(`^1\\s+retired\\s+${v1.replace(/[/]/g, '\\/')}`, 'm'));
});

test('kmip: a running atrest kms-plugin stops unwrapping with a version another process retired, at its next refresh, though the local KEK is in memory', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-kmip-retire-plugin-');
  const env = {
    ATREST_KMS_PLUGIN_BACKEND: 'kmip',
    ATREST_KMIP_ENDPOINT: srv.endpoint,
    ATREST_KMIP_CA: srv.pki.client.caPath,
    ATREST_KMIP_CERT: srv.pki.client.certPath,
    ATREST_KMIP_KEY: srv.pki.client.keyPath,
    ATREST_KMIP_KEY_NAME: 'retire-running',
  };
  const socket = `${dir}/kms.sock`;
  const client = TestKmsClient.forPath(socket);
  let plugin: PluginProcess | undefined;
  try {
    const init = await runAtrest(['kms-plugin', 'init-key'], env);
    assert.equal(init.code, 0, init.stderr);
    const v1 = init.stdout.trim();
    plugin = new PluginProcess(['--listen', `unix://${socket}`, '--refresh-interval', '200'], env);
    await plugin.waitForEvent('start');
    const dek = randomBytes(32);
    const old = await client.encrypt(dek);
    const oldV1 = await client.v1Encrypt(dek);
    assert.equal(old.keyId, v1);
    const rotate = await runAtrest(['kms-plugin', 'rotate-key'], env);
    assert.equal(rotate.code, 0, rotate.stderr);
    const v2 = rotate.stdout.trim();
    await waitFor('the plugin to use v2', async () => (await client.status()).keyId === v2);
    // The local KEK v1 wrapped is held (the plugin made it): these open without the KMIP server.
    assert.deepEqual(Buffer.from((await client.decrypt(old.ciphertext, v1, 'v2', old.annotations)).plaintext), dek);

    await kmipBackend.retireKey!(options('retire-running'), context(), v1);
    const seen = await plugin.waitForEvent('remote-kek-version-unusable');
    assert.equal(seen['keyId'], v1);
    const deactivated = /retire-running\/v1 \(unique identifier .*\) \(key_id kmip:retire-running\/v1:.*\) is Deactivated \(retired or revoked\) and cannot be used/;
    const refused = (e: unknown): boolean => grpcCodeOf(e) === grpc.status.FAILED_PRECONDITION && deactivated.test(String(e));
    for (let i = 0; i < 3; i++) {
      await assert.rejects(client.decrypt(old.ciphertext, v1, 'v2', old.annotations), refused);
      await assert.rejects(client.v1Decrypt(oldV1.cipher), refused);
    }
    const fresh = await client.encrypt(dek);
    assert.equal(fresh.keyId, v2);
    assert.deepEqual(Buffer.from((await client.decrypt(fresh.ciphertext, v2, 'v2', fresh.annotations)).plaintext), dek);
    const stopped = plugin;
    plugin = undefined;
    assert.equal(await stopped.stop(), 0);
    // Log lines arrive in order: once its last one is in, every refusal's is.
    await waitFor('the plugin\'s last log line', () => stopped.logs.some((l) => l.event === 'stop'));
    assert.equal(stopped.logs.filter((l) => l.event === 'retired-remote-kek-used').length, 1, 'the refusals are logged once');
  } finally {
    client.close();
    await plugin?.stop();
    await cleanup();
  }
});
