// A value whose KEK version was retired but can still be restored (a backup restored after `atrest
// rotate` retired the version) is its own verdict end to end: the real plugin answers Decrypt with
// FailedPrecondition naming the key_id and the restore-key command; `atrest verify` (table, -o json,
// --textfile), `status`, `decrypt` and a StorageVersionMigration report it as "needs a retired KEK
// version" — never undecryptable, never with the unsafe-delete command, exit 1 (a finding) — and
// after `atrest kms-plugin restore-key` the values read again. Twice: the local backend (plugin in
// this process, embedded store, the built CLI) and pkcs11 on SoftHSM through a running `atrest
// kms-plugin` with its key hierarchy.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { localBackend } from '../../src/plugin/backends/local.js';
import { pkcs11Backend } from '../../src/plugin/backends/pkcs11.js';
import { startPluginServer } from '../../src/plugin/server.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { Store } from '../../src/storage/types.js';
import type { StatusReport } from '../../src/tools/status.js';
import type { VerifyReport } from '../../src/tools/verify.js';
import { keyIdHash } from '../../src/transform/kmsv2/validation.js';
import { runCli } from '../helpers/cli.js';
import { condition, createMigration, waitFinished } from '../helpers/migrations.js';
import { PluginProcess, makeTempDir, waitFor } from '../helpers/plugin.js';
import { startTestServer, writeKmsV2Config } from '../helpers/server.js';
import { createSoftHsm } from '../helpers/softhsm.js';
import { inProcessLogger } from '../helpers/test-log.js';
import { PREFIX, kmsTransformers, secretJson } from './rotate-fixture.js';

const ctx = { log: inProcessLogger('retired-key') };
const OLD = 4;
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Writes secrets `<prefix><i>` through the configuration's kms v2 provider (the plugin's current version). */
async function seed(configPath: string, raw: Store, names: string[]): Promise<void> {
  const { store, close } = await kmsTransformers(configPath);
  try {
    const encrypted = store(raw);
    for (const name of names) await encrypted.create(`${PREFIX}/secrets/default/${name}`, secretJson(name, `value-${name}`));
  } finally {
    await close();
  }
}

test('local backend: values under a retired version are "needs a retired KEK version" in verify, status, decrypt and a migration; restore-key brings them back', { timeout: 90_000 }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-retired-local-');
  const keyFile = join(dir, 'kek.json');
  const v1 = await localBackend.initKey({ keyFile }, ctx);
  const backend = await localBackend.open({ keyFile }, ctx);
  const socket = join(dir, 'kms.sock');
  const plugin = await startPluginServer({ listen: `unix://${socket}`, backend, refreshIntervalMs: 100, log: inProcessLogger('kms-plugin') });
  try {
    const configPath = writeKmsV2Config(dir, socket);
    const storeFile = join(dir, 'store.db');
    const raw = openSqliteStore(storeFile);
    // A backup of values under v1, restored after `atrest rotate` moved everything to v2 and retired v1.
    await seed(configPath, raw, Array.from({ length: OLD }, (_, i) => `old${i}`));
    await localBackend.rotateKey({ keyFile }, ctx);
    await waitFor('the plugin to load v2', async () => (await backend.currentKeyId()) !== v1);
    await seed(configPath, raw, ['new0']);
    await raw.close();
    await localBackend.retireKey!({ keyFile, retirementGracePeriod: '48h' }, ctx, v1);
    await waitFor('the plugin to see v1 retired', () => !backend.usableKeyIds!().has(v1));

    const base = ['--encryption-provider-config', configPath, '--data-dir', dir];
    const promDir = join(dir, 'textfile');
    await mkdir(promDir);
    const prom = join(promDir, 'atrest_verify.prom');
    const json = await runCli(['verify', ...base, '-o', 'json', '--textfile', prom]);
    assert.equal(json.code, 1, `a finding, not "could not complete": ${json.stderr}`);
    const report = JSON.parse(json.stdout) as VerifyReport;
    const secrets = report.resources.find((r) => r.resource === 'secrets')!;
    assert.deepEqual(secrets.undecryptable, [], 'nothing is undecryptable');
    assert.equal(secrets.unchecked, 0);
    assert.deepEqual(secrets.needsRetiredKey.map((v) => v.name), ['old0', 'old1', 'old2', 'old3']);
    const restoreCommand = `atrest kms-plugin restore-key --backend local --key-file ${keyFile} --key-id ${v1}`;
    for (const v of secrets.needsRetiredKey) {
      assert.equal(v.keyIdHash, keyIdHash(v1));
      assert.equal((v as { deletePath?: string }).deletePath, undefined, 'no unsafe delete for a value that is not lost');
      assert.match(v.error, /rpc error: code = FailedPrecondition desc = ciphertext needs key version 1 \(key_id local:v1:[0-9a-f]+\), retired at /);
      assert.ok(v.error.includes(restoreCommand), v.error);
    }
    assert.equal(report.complete, true);
    assert.equal(report.ok, false);
    const text = await readFile(prom, 'utf8');
    assert.match(text, /^atrest_verify_retired_key_values\{resource="secrets"\} 4$/m);
    assert.match(text, /^atrest_verify_undecryptable_values\{resource="secrets"\} 0$/m);
    assert.match(text, /^atrest_verify_check_complete 1$/m);

    const table = await runCli(['verify', ...base]);
    assert.equal(table.code, 1, table.stderr);
    assert.doesNotMatch(table.stdout, /kubectl delete --raw|unsafe delete/);
    assert.match(table.stdout, /^secrets: 5 values, 0 plaintext, 0 stale, 0 undecryptable, 4 need a retired KEK version$/m);
    assert.match(table.stdout, new RegExp(`^  needs a retired KEK version \\(key_id ${keyIdHash(v1)}\\) ${PREFIX}/secrets/default/old0: .*${escape(restoreCommand)}`, 'm'));
    assert.match(table.stdout, new RegExp(`^4 values need a retired KEK version \\(key_id ${keyIdHash(v1)}\\)\n  these values are NOT lost: restore the KEK version .*Do not delete them\\.$`, 'm'));
    assert.match(table.stdout, /^NOT OK: 4 need a retired KEK version \(restore it, see above; not lost\)$/m);

    const status = await runCli(['status', ...base, '-o', 'json']);
    assert.equal(status.code, 1, status.stderr);
    const statusReport = JSON.parse(status.stdout) as StatusReport;
    assert.deepEqual(statusReport.problems, ['4 values need a retired KEK version (not lost: restore it; atrest verify lists them with the command)']);

    const one = await runCli(['decrypt', ...base, `${PREFIX}/secrets/default/old1`]);
    assert.equal(one.code, 1, one.stderr);
    assert.equal(one.stdout, '');
    assert.match(one.stderr, /^atrest decrypt: \/registry\/secrets\/default\/old1 needs a retired KEK version \(not lost: restore it, then decrypt again\): .*FailedPrecondition/);

    // A StorageVersionMigration over them fails with the restore advice, not "delete them".
    const store = openSqliteStore(storeFile);
    const server = await startTestServer({ store, encryptionProviderConfig: configPath, leaderElection: { leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 200 } }, join(dir, 'server'));
    try {
      await createMigration(server.server, 'secrets', 'secrets');
      const failed = condition(await waitFinished(server.server, 'secrets'), 'Failed');
      assert.equal(failed?.status, 'True');
      assert.match(failed?.message ?? '', /^migration encountered unhandled error: 4 stored objects of secrets need a retired KEK version: \/registry\/secrets\/default\/old0, .*; they are not lost: restore the KEK version \(atrest kms-plugin restore-key/);
      assert.ok(failed?.message.includes(restoreCommand), failed?.message);
      assert.doesNotMatch(failed?.message ?? '', /delete/);
    } finally {
      await server.close();
    }

    const restore = await runCli(['kms-plugin', 'restore-key', '--key-file', keyFile, '--key-id', v1]);
    assert.equal(restore.code, 0, restore.stderr);
    await waitFor('the plugin to load v1 again', () => backend.usableKeyIds!().has(v1));
    const rewrite = await runCli(['rewrite', ...base]);
    assert.equal(rewrite.code, 0, rewrite.stderr + rewrite.stdout);
    assert.match(rewrite.stdout, /rewritten 4,/);
    const after = await runCli(['verify', ...base, '--textfile', prom]);
    assert.equal(after.code, 0, after.stdout + after.stderr);
    assert.match(after.stdout, /^OK: /m);
    assert.match(await readFile(prom, 'utf8'), /^atrest_verify_retired_key_values\{resource="secrets"\} 0$/m);
  } finally {
    await plugin.close();
    await backend.close();
    await cleanup();
  }
});

test('pkcs11 on SoftHSM, a running atrest kms-plugin with its key hierarchy: verify reports values under a retired version with the restore command; restore-key makes them read', { timeout: 90_000 }, async () => {
  const hsm = await createSoftHsm({ tokenLabel: 'atrest-retired' });
  const socket = join(hsm.dir, 'kms.sock');
  const o = { pkcs11Module: hsm.modulePath, pkcs11TokenLabel: hsm.token.label, pkcs11PinFile: hsm.token.pinFile, pkcs11KeyLabel: 'kek' };
  const env = {
    ...hsm.env, ATREST_KMS_PLUGIN_BACKEND: 'pkcs11', ATREST_PKCS11_MODULE: hsm.modulePath, ATREST_PKCS11_TOKEN_LABEL: hsm.token.label,
    ATREST_PKCS11_PIN_FILE: hsm.token.pinFile, ATREST_PKCS11_KEY_LABEL: 'kek',
  };
  const v1 = await pkcs11Backend.initKey(o, ctx);
  const plugin = new PluginProcess(['--listen', `unix://${socket}`, '--refresh-interval', '200'], env);
  try {
    await plugin.waitForEvent('start');
    const configPath = writeKmsV2Config(hsm.dir, socket);
    const raw = openSqliteStore(join(hsm.dir, 'store.db'));
    await seed(configPath, raw, Array.from({ length: OLD }, (_, i) => `old${i}`));
    await raw.close();
    await pkcs11Backend.rotateKey(o, ctx);
    await pkcs11Backend.retireKey!(o, ctx, v1);
    // The hierarchy held the local KEK v1 wrapped; it drops it at its next refresh.
    assert.equal((await plugin.waitForEvent('remote-kek-version-unusable'))['keyId'], v1);

    const base = ['--encryption-provider-config', configPath, '--data-dir', hsm.dir];
    const refused = await runCli(['verify', ...base, '-o', 'json'], { env: hsm.env });
    assert.equal(refused.code, 1, refused.stderr);
    const secrets = (JSON.parse(refused.stdout) as VerifyReport).resources[0]!;
    assert.equal(secrets.resource, 'secrets');
    assert.deepEqual(secrets.undecryptable, []);
    assert.equal(secrets.needsRetiredKey.length, OLD);
    const restoreCommand = `atrest kms-plugin restore-key --backend pkcs11 --pkcs11-module ${hsm.modulePath} --pkcs11-token-label ${hsm.token.label} ` +
      `--pkcs11-key-label kek --pkcs11-pin-file ${hsm.token.pinFile} --key-id ${v1}`;
    for (const v of secrets.needsRetiredKey) {
      assert.equal(v.keyIdHash, keyIdHash(v1));
      assert.match(v.error, /code = FailedPrecondition desc = pkcs11 key version \S+ may not decrypt \(retired\?\): restore it with `/);
      assert.ok(v.error.includes(restoreCommand), v.error);
      assert.ok(!v.error.includes(hsm.token.pin), 'never the PIN');
    }

    // The command the refusal names, as an operator pastes it.
    const restore = await runCli(restoreCommand.split(' ').slice(1), { env: hsm.env });
    assert.equal(restore.code, 0, restore.stderr);
    await plugin.waitForEvent('remote-kek-version-usable');
    const back = await runCli(['verify', ...base, '-o', 'json'], { env: hsm.env });
    const read = (JSON.parse(back.stdout) as VerifyReport).resources[0]!;
    assert.equal(back.code, 1, 'stale until rewritten');
    assert.deepEqual([read.needsRetiredKey.length, read.undecryptable.length, read.stale], [0, 0, OLD]);
  } finally {
    assert.equal(await plugin.stop(), 0);
    await hsm.cleanup();
  }
});
