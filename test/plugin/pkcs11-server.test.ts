// The KMS plugin with the pkcs11 backend end to end over a real UNIX socket and a real SoftHSM
// token: in-process (startPluginServer) and as `atrest kms-plugin` child processes configured only
// through ATREST_PKCS11_* environment variables.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { BackendOptions } from '../../src/plugin/backend.js';
import { pkcs11Backend } from '../../src/plugin/backends/pkcs11.js';
import { startPluginServer } from '../../src/plugin/server.js';
import { grpcCodeOf, PluginProcess, runAtrest, TestKmsClient, waitFor } from '../helpers/plugin.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';
import { inProcessLogger } from '../helpers/test-log.js';

const context = { log: inProcessLogger('kms-plugin') };
let hsm: SoftHsm;

function opts(keyLabel: string): BackendOptions {
  return { pkcs11Module: hsm.modulePath, pkcs11TokenLabel: hsm.token.label, pkcs11PinFile: hsm.token.pinFile, pkcs11KeyLabel: keyLabel };
}

before(async () => {
  hsm = await createSoftHsm({ tokenLabel: 'atrest-plugin' });
});

after(async () => {
  await hsm?.cleanup();
});

describe('kms plugin with the pkcs11 backend', () => {
  it('serves v2 and v1beta1 round trips, rejects tampering and follows a rotation (in-process)', async () => {
    const firstKeyId = await pkcs11Backend.initKey(opts('kek-inproc'), context);
    const backend = await pkcs11Backend.open(opts('kek-inproc'), context);
    const socket = join(hsm.dir, 'inproc.sock');
    const server = await startPluginServer({ listen: `unix://${socket}`, backend, refreshIntervalMs: 100, log: context.log });
    const client = TestKmsClient.forPath(socket);
    try {
      const status = await client.status();
      assert.equal(status.healthz, 'ok');
      assert.equal(status.keyId, firstKeyId);

      const dek = randomBytes(32);
      const wrapped = await client.encrypt(dek);
      assert.equal(wrapped.keyId, firstKeyId);
      assert.ok(wrapped.ciphertext.length > 32 && wrapped.ciphertext.length <= 1024);
      assert.deepEqual(Buffer.from((await client.decrypt(wrapped.ciphertext, wrapped.keyId)).plaintext), dek);

      const seed = randomBytes(32);
      const { cipher } = await client.v1Encrypt(seed);
      assert.deepEqual(Buffer.from((await client.v1Decrypt(cipher)).plain), seed);

      const tampered = Buffer.from(wrapped.ciphertext);
      tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
      await assert.rejects(client.decrypt(tampered, wrapped.keyId), (err: Error & { details?: string }) => {
        assert.equal(grpcCodeOf(err), GrpcStatus.INVALID_ARGUMENT, err.message);
        return true;
      });

      const secondKeyId = await pkcs11Backend.rotateKey(opts('kek-inproc'), context);
      const rotated = await waitFor('Status to report the new key_id', async () => {
        const s = await client.status();
        return s.keyId === secondKeyId ? s : undefined;
      });
      assert.equal(rotated.healthz, 'ok');
      const fresh = await client.encrypt(dek);
      assert.equal(fresh.keyId, secondKeyId);
      assert.deepEqual(Buffer.from((await client.decrypt(wrapped.ciphertext, wrapped.keyId)).plaintext), dek, 'old ciphertext after rotation');
      assert.deepEqual(Buffer.from((await client.decrypt(fresh.ciphertext, fresh.keyId)).plaintext), dek);
    } finally {
      client.close();
      await server.close();
      await backend.close();
    }
  });

  it('atrest kms-plugin init-key / serve / rotate-key with ATREST_PKCS11_* variables only', async () => {
    const socket = join(hsm.dir, 'cli.sock');
    const env = {
      ...hsm.env,
      ATREST_PKCS11_MODULE: hsm.modulePath,
      ATREST_PKCS11_TOKEN_LABEL: hsm.token.label,
      ATREST_PKCS11_PIN_FILE: hsm.token.pinFile,
      ATREST_PKCS11_KEY_LABEL: 'kek-cli',
      ATREST_KMS_PLUGIN_BACKEND: 'pkcs11',
    };
    const init = await runAtrest(['kms-plugin', 'init-key'], env);
    assert.equal(init.code, 0, init.stderr);
    const firstKeyId = init.stdout.trim();
    assert.match(firstKeyId, /^pkcs11:atrest-plugin:kek-cli:00000001[0-9a-f]{16}$/);
    const again = await runAtrest(['kms-plugin', 'init-key'], env);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /exists already/);

    const plugin = new PluginProcess(['--listen', `unix://${socket}`, '--refresh-interval', '200'], env);
    const client = TestKmsClient.forPath(socket);
    try {
      await plugin.waitForEvent('start');
      assert.equal((await lstat(socket)).mode & 0o777, 0o600);
      const status = await client.status();
      assert.equal(status.healthz, 'ok');
      assert.equal(status.keyId, firstKeyId);
      const dek = randomBytes(32);
      const wrapped = await client.encrypt(dek);
      assert.deepEqual(Buffer.from((await client.decrypt(wrapped.ciphertext, wrapped.keyId, 'v2', wrapped.annotations)).plaintext), dek);

      const rotate = await runAtrest(['kms-plugin', 'rotate-key'], env);
      assert.equal(rotate.code, 0, rotate.stderr);
      const secondKeyId = rotate.stdout.trim();
      assert.match(secondKeyId, /:00000002[0-9a-f]{16}$/);
      await waitFor('the running plugin to pick up the rotation', async () => (await client.status()).keyId === secondKeyId);
      assert.equal((await client.encrypt(dek)).keyId, secondKeyId);
      assert.deepEqual(Buffer.from((await client.decrypt(wrapped.ciphertext, wrapped.keyId, 'v2', wrapped.annotations)).plaintext), dek);

      const logs = plugin.stderrLines.join('\n');
      assert.ok(!logs.includes(hsm.token.pin), 'the PIN must never be logged');
      assert.ok(!logs.includes(dek.toString('base64')) && !logs.includes(dek.toString('hex')));
    } finally {
      client.close();
      assert.equal(await plugin.stop(), 0);
    }
    await assert.rejects(lstat(socket), { code: 'ENOENT' });
  });

  it('atrest kms-plugin refuses a readable PIN file and an unknown token before serving', async () => {
    const base = ['--listen', `unix://${join(hsm.dir, 'refused.sock')}`, '--backend', 'pkcs11', '--pkcs11-module', hsm.modulePath, '--pkcs11-key-label', 'kek-cli'];
    const loose = join(hsm.dir, 'loose.pin');
    await writeFile(loose, `${hsm.token.pin}\n`);
    await chmod(loose, 0o644);
    const refused = await runAtrest(['kms-plugin', ...base, '--pkcs11-token-label', hsm.token.label, '--pkcs11-pin-file', loose], hsm.env);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /--pkcs11-pin-file .*mode 0644/);
    assert.ok(!refused.stderr.includes(hsm.token.pin));
    const unknown = await runAtrest(['kms-plugin', ...base, '--pkcs11-token-label', 'nope', '--pkcs11-pin-file', hsm.token.pinFile], hsm.env);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /no token labelled \\?"nope\\?"/);
  });
});
