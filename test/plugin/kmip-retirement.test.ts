// Retiring KEK versions of the kmip backend on a real KMIP server (Debian's PyKMIP): Revoke with
// reason Superseded makes the version Deactivated; the server then refuses it, and there is no
// way back (no restore-key for kmip).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BackendError, type BackendOptions } from '../../src/plugin/backend.js';
import { kmipBackend } from '../../src/plugin/backends/kmip.js';
import { newRegistry } from '../../src/metrics.js';
import { startPykmip, type PykmipServer } from '../helpers/pykmip.js';
import { runAtrest } from '../helpers/plugin.js';
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

    await assert.rejects(kek.decrypt(old.ciphertext), (e: Error) => {
      assert.ok(e instanceof BackendError && e.code === 'KEY_NOT_FOUND', String(e));
      assert.match(e.message, /retire-kek\/v1 .* is Deactivated/);
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
