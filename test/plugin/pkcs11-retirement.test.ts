// Retiring and restoring KEK versions of the pkcs11 backend on a real SoftHSM2 token: the token
// itself refuses the retired version (CKA_DECRYPT/CKA_UNWRAP false), in this process and in a
// running `atrest kms-plugin` that did not make the change; and `atrest rotate --backend pkcs11`
// end to end (etcd, atrest serve, StorageVersionMigration).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BackendError, type BackendOptions } from '../../src/plugin/backend.js';
import { pkcs11Backend } from '../../src/plugin/backends/pkcs11.js';
import * as grpc from '@grpc/grpc-js';
import { grpcCodeOf, PluginProcess, runAtrest, TestKmsClient, waitFor } from '../helpers/plugin.js';
import { etcdAvailable } from '../helpers/etcd.js';
import { apiRequest } from '../helpers/server.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';
import { inProcessLogger } from '../helpers/test-log.js';
import { seedSecrets, startRotateWorld } from '../tools/rotate-fixture.js';

const context = { log: inProcessLogger('kms-plugin') };
let hsm: SoftHsm;

function opts(keyLabel: string, mechanism = 'auto'): BackendOptions {
  return { pkcs11Module: hsm.modulePath, pkcs11TokenLabel: hsm.token.label, pkcs11PinFile: hsm.token.pinFile, pkcs11KeyLabel: keyLabel, pkcs11Mechanism: mechanism };
}

before(async () => {
  hsm = await createSoftHsm({ tokenLabel: 'atrest-retire' });
});

after(async () => {
  await hsm?.cleanup();
});

describe('pkcs11 KEK retirement', () => {
  for (const mechanism of ['aes-gcm', 'aes-kwp']) {
    it(`${mechanism}: a retired version cannot unwrap; the current one cannot be retired; restore brings it back`, async () => {
      const label = `kek-${mechanism}`;
      const o = opts(label, mechanism);
      const v1 = await pkcs11Backend.initKey(o, context);
      const kek = await pkcs11Backend.open(o, context);
      try {
        const dek = randomBytes(32);
        const old = await kek.encrypt(dek);
        const v2 = await pkcs11Backend.rotateKey(o, context);
        await kek.refresh();
        assert.deepEqual((await pkcs11Backend.listKeys!(o, context)).map((v) => [v.keyId, v.state]), [[v1, 'active'], [v2, 'current']]);
        await assert.rejects(pkcs11Backend.retireKey!(o, context, v2), /is the current version: it cannot be retired/);
        await assert.rejects(pkcs11Backend.retireKey!(o, context, 'pkcs11:x:y:z'), (e) => e instanceof BackendError && e.code === 'KEY_NOT_FOUND');

        const retired = await pkcs11Backend.retireKey!(o, context, v1);
        assert.equal(retired.state, 'retired');
        assert.equal((await pkcs11Backend.retireKey!(o, context, v1)).state, 'retired', 'retiring again is a no-op');
        assert.deepEqual((await pkcs11Backend.listKeys!(o, context)).map((v) => v.state), ['retired', 'current']);
        // What a running backend learns at its refresh (the key hierarchy acts on it), without the token.
        await kek.refresh();
        assert.deepEqual([...kek.usableKeyIds!()], [v2]);
        assert.equal(kek.wrappedBy!(old.ciphertext)?.keyId, v1);
        assert.match(kek.wrappedBy!(old.ciphertext)?.refusal?.message ?? '', /may not decrypt \(retired\?\)/);
        await assert.rejects(kek.decrypt(old.ciphertext), (e: Error) => {
          assert.ok(e instanceof BackendError && e.code === 'KEY_RETIRED', String(e));
          // The whole restore-key command line, with this backend's flags (the PIN file's path, never the PIN).
          assert.ok(e.message.includes(`restore it with \`atrest kms-plugin restore-key --backend pkcs11 --pkcs11-module ${hsm.modulePath} --pkcs11-token-label ${hsm.token.label} ` +
            `--pkcs11-key-label ${label} --pkcs11-pin-file ${hsm.token.pinFile} --key-id ${v1}\``), e.message);
          assert.ok(!e.message.includes(hsm.token.pin), 'no PIN');
          return true;
        });
        // New wraps use v2 and still work.
        const fresh = await kek.encrypt(dek);
        assert.equal(fresh.keyId, v2);
        assert.deepEqual(await kek.decrypt(fresh.ciphertext), dek);

        assert.equal((await pkcs11Backend.restoreKey!(o, context, v1)).state, 'active');
        assert.deepEqual(await kek.decrypt(old.ciphertext), dek);
        await kek.refresh();
        assert.deepEqual([...kek.usableKeyIds!()].sort(), [v1, v2].sort());
        assert.equal(kek.wrappedBy!(old.ciphertext)?.refusal, undefined);
      } finally {
        await kek.close();
      }
    });
  }

  // thread: the backend on its own thread, whose host learns the versions' usability from its replies.
  for (const callMode of ['async', 'thread']) {
    it(`a running atrest kms-plugin (--pkcs11-call-mode ${callMode}) sees a retirement and a restore made by another process`, async () => {
      const socket = join(hsm.dir, `retire-${callMode}.sock`);
      const env = {
        ...hsm.env,
        ATREST_KMS_PLUGIN_BACKEND: 'pkcs11',
        ATREST_PKCS11_MODULE: hsm.modulePath,
        ATREST_PKCS11_TOKEN_LABEL: hsm.token.label,
        ATREST_PKCS11_PIN_FILE: hsm.token.pinFile,
        ATREST_PKCS11_KEY_LABEL: `kek-cli-${callMode}`,
        ATREST_PKCS11_CALL_MODE: callMode,
      };
      const init = await runAtrest(['kms-plugin', 'init-key'], env);
      assert.equal(init.code, 0, init.stderr);
      const v1 = init.stdout.trim();
      const plugin = new PluginProcess(['--listen', `unix://${socket}`, '--refresh-interval', '200'], env);
      const client = TestKmsClient.forPath(socket);
      try {
        await plugin.waitForEvent('start');
        const dek = randomBytes(32);
        const old = await client.encrypt(dek);
        const rotate = await runAtrest(['kms-plugin', 'rotate-key'], env);
        assert.equal(rotate.code, 0, rotate.stderr);
        await waitFor('the plugin to use v2', async () => (await client.status()).keyId === rotate.stdout.trim());

        // Held in memory (the local KEK the old value names is in the decrypt cache) until the retirement.
        assert.deepEqual(Buffer.from((await client.decrypt(old.ciphertext, v1, 'v2', old.annotations)).plaintext), dek);
        await pkcs11Backend.retireKey!(opts(`kek-cli-${callMode}`), context, v1);
        // The plugin sees it at its next refresh (every 200 ms here) and drops what v1 wrapped.
        const seen = await plugin.waitForEvent('remote-kek-version-unusable');
        assert.equal(seen['keyId'], v1);
        // FailedPrecondition (not Internal): the value needs the version restored, it is not refused for good.
        for (let i = 0; i < 3; i++) {
          await assert.rejects(client.decrypt(old.ciphertext, v1, 'v2', old.annotations), (e: unknown) => grpcCodeOf(e) === grpc.status.FAILED_PRECONDITION && /may not decrypt \(retired\?\)/.test(String(e)));
        }
        const listed = await runAtrest(['kms-plugin', 'list-keys', '-o', 'json'], env);
        assert.equal(listed.code, 0, listed.stderr);
        assert.deepEqual((JSON.parse(listed.stdout) as Array<{ state: string }>).map((v) => v.state), ['retired', 'current']);

        const restore = await runAtrest(['kms-plugin', 'restore-key', '--key-id', v1], env);
        assert.equal(restore.code, 0, restore.stderr);
        await plugin.waitForEvent('remote-kek-version-usable');
        // Log lines arrive in order: every refusal's is in by now.
        assert.equal(plugin.logs.filter((l) => l.event === 'retired-remote-kek-used').length, 1, 'the refusals are logged once');
        assert.deepEqual(Buffer.from((await client.decrypt(old.ciphertext, v1, 'v2', old.annotations)).plaintext), dek);
      } finally {
        client.close();
        assert.equal(await plugin.stop(), 0);
      }
    });
  }

  it('atrest rotate --backend pkcs11: rotates in the token, migrates, verifies and retires the old version', { skip: !etcdAvailable() && 'needs etcd' }, async () => {
    const o = opts('kek-rotate');
    const v1 = await pkcs11Backend.initKey(o, context);
    const flags = ['--pkcs11-module', hsm.modulePath, '--pkcs11-token-label', hsm.token.label, '--pkcs11-pin-file', hsm.token.pinFile, '--pkcs11-key-label', 'kek-rotate'];
    const w = await startRotateWorld({ prefix: 'atrest-rotate-pkcs11-', backend: { module: pkcs11Backend, options: o, flags, env: hsm.env } });
    try {
      await seedSecrets(w, 20);
      const r = await w.rotate();
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^rotation complete: current KEK version pkcs11:atrest-retire:kek-rotate:00000002[0-9a-f]{16}; retired ${v1}\\n$`));
      assert.ok(r.stderr.includes(`restorable with: atrest kms-plugin restore-key --backend pkcs11 --pkcs11-module ${hsm.modulePath} --pkcs11-token-label ${hsm.token.label} --pkcs11-key-label kek-rotate --pkcs11-pin-file ${hsm.token.pinFile} --key-id ${v1}`), r.stderr);
      assert.deepEqual((await pkcs11Backend.listKeys!(o, context)).map((v) => v.state), ['retired', 'current']);
      const read = await apiRequest(w.api, 'GET', '/api/v1/namespaces/default/secrets/s5');
      assert.equal(Buffer.from(read.json<{ data: { v: string } }>().data.v, 'base64').toString(), 'value-5');
    } finally {
      await w.close();
    }
  });
});
