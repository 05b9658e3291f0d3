// Issue #20 §2, "cannot check is not lost", end to end with a real KMS plugin (local backend, its
// socket) and the built CLI on an embedded store: with the plugin down, `verify`, `status`,
// `decrypt` and `rewrite` report the kms values as not checked (exit 3), never as undecryptable and
// never with the unsafe-delete command; `--textfile` exports the separate "check could not complete"
// signal; values other providers read are still judged (a broken aescbc value stays undecryptable);
// a store that cannot be read is exit 3 too. With the plugin up, a ciphertext the plugin refuses
// (InvalidArgument) is undecryptable. The kms timeout is 1 s here: thirty-odd values that each waited
// it out would outlast the test's timeout, so the short-circuit is what lets this test finish (the
// call counts are asserted in test/storage/check-failure.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseEncryptionConfig } from '../../src/config/load.js';
import { createKmsProviders } from '../../src/kms/factory.js';
import { localBackend } from '../../src/plugin/backends/local.js';
import { startPluginServer, type PluginServer } from '../../src/plugin/server.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import { buildTransformers } from '../../src/transform/build.js';
import { decodeEncryptedObject, encodeEncryptedObject } from '../../src/transform/kmsv2/encrypted-object.js';
import type { StatusReport } from '../../src/tools/status.js';
import type { VerifyReport } from '../../src/tools/verify.js';
import { runCli } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/plugin.js';
import { freePort } from '../helpers/etcd.js';
import { inProcessLogger } from '../helpers/test-log.js';

const KMS = 'down-kms';
const AESCBC_KEY = Buffer.alloc(32, 5).toString('base64');
const AESGCM_KEY = Buffer.alloc(32, 6).toString('base64');
const VALUES = 30;

const config = (socket: string, first = '') => `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
${first}      - kms: { apiVersion: v2, name: ${KMS}, endpoint: "unix://${socket}", timeout: 1s }
      - aescbc: { keys: [{ name: key1, secret: "${AESCBC_KEY}" }] }
      - identity: {}
`;

async function startPlugin(keyFile: string, socket: string): Promise<{ close(): Promise<void>; server: PluginServer }> {
  const ctx = { log: inProcessLogger('cannot-check') };
  const backend = await localBackend.open({ keyFile }, ctx);
  const server = await startPluginServer({ listen: `unix://${socket}`, backend, log: inProcessLogger('kms-plugin') });
  return { server, close: async () => { await server.close(); await backend.close(); } };
}

test('a KMS plugin that is down makes values "not checked" (exit 3), never undecryptable; a refused ciphertext is undecryptable', { timeout: 150_000 }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-cannot-check-');
  let plugin: { close(): Promise<void> } | undefined;
  try {
    const keyFile = join(dir, 'kek.json');
    await localBackend.initKey({ keyFile }, { log: inProcessLogger('cannot-check') });
    const socket = join(dir, 'kms.sock');
    plugin = await startPlugin(keyFile, socket);
    const configPath = join(dir, 'enc.yaml');
    await writeFile(configPath, config(socket));

    // The values: kms v2 ones, one whose wrapped DEK seed was tampered with (the plugin refuses it:
    // InvalidArgument), a stale aescbc one and a broken aescbc one (refused locally).
    const kms = createKmsProviders({ log: inProcessLogger('cannot-check') });
    const set = buildTransformers(parseEncryptionConfig(config(socket), 'enc.yaml').config, { kms: kms.factory });
    await kms.ready();
    const secrets = set.forResource({ group: '', resource: 'secrets' });
    const store = openSqliteStore(join(dir, 'store.db'));
    const plain = Buffer.from(JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'x', namespace: 'default' }, data: { k: 'dg==' } }));
    for (let i = 0; i < VALUES; i++) {
      const key = `/registry/secrets/default/s${String(i).padStart(2, '0')}`;
      await store.create(key, await secrets.toStorage(plain, Buffer.from(key)));
    }
    const tampered = '/registry/secrets/default/tampered';
    const prefix = Buffer.from(`k8s:enc:kms:v2:${KMS}:`);
    const good = await secrets.toStorage(plain, Buffer.from(tampered));
    const object = decodeEncryptedObject(good.subarray(prefix.length));
    const source = Buffer.from(object.encryptedDEKSource);
    source[source.length - 1]! ^= 1;
    await store.create(tampered, Buffer.concat([prefix, encodeEncryptedObject({ ...object, encryptedDEKSource: source })]));
    const aescbc = buildTransformers(parseEncryptionConfig(config(socket).replace(/ {6}- kms: .*\n/, ''), 'old.yaml').config).forResource({ group: '', resource: 'secrets' });
    const stale = '/registry/secrets/default/stale';
    await store.create(stale, await aescbc.toStorage(plain, Buffer.from(stale)));
    const broken = '/registry/secrets/default/broken';
    await store.create(broken, Buffer.from('k8s:enc:aescbc:v1:key1:short'));
    await store.close();
    await kms.close();
    const base = ['--encryption-provider-config', configPath, '--data-dir', dir];

    // Plugin up: the refused ciphertext and the broken value are undecryptable (exit 1).
    const up = await runCli(['verify', ...base, '-o', 'json']);
    assert.equal(up.code, 1, up.stderr);
    const upReport = JSON.parse(up.stdout) as VerifyReport;
    assert.deepEqual(upReport.resources[0]!.undecryptable.map((u) => u.key), [broken, tampered]);
    assert.match(upReport.resources[0]!.undecryptable[1]!.error, /InvalidArgument/);
    assert.equal(upReport.complete, true);

    // Plugin down.
    await plugin.close();
    plugin = undefined;
    const promDir = join(dir, 'textfile');
    await mkdir(promDir);
    const prom = join(promDir, 'atrest_verify.prom');
    const down = await runCli(['verify', ...base, '-o', 'json', '--textfile', prom]);
    assert.equal(down.code, 3, down.stderr + down.stdout);
    const report = JSON.parse(down.stdout) as VerifyReport;
    const r = report.resources[0]!;
    assert.equal(r.total, VALUES + 3);
    assert.equal(r.unchecked, VALUES + 1, 'every kms value, the tampered one too: nothing can be said about them');
    assert.deepEqual(r.undecryptable.map((u) => u.key), [broken], 'a value other providers refuse is still undecryptable');
    assert.equal(r.stale, 1, 'values other providers read are still checked');
    assert.equal(report.complete, false);
    assert.equal(report.ok, false);
    assert.equal(report.notChecked.length, 1);
    assert.equal(report.notChecked[0]!.values, VALUES + 1);
    assert.match(report.notChecked[0]!.cause, new RegExp(`^kms v2 provider "${KMS}" \\(plugin unix://${socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\): plugin unreachable: `));
    const text = await readFile(prom, 'utf8');
    assert.match(text, /^atrest_verify_unchecked_values\{resource="secrets"\} 31$/m);
    assert.match(text, /^atrest_verify_undecryptable_values\{resource="secrets"\} 1$/m);
    assert.match(text, /^atrest_verify_check_complete 0$/m);

    // The table: one unsafe-delete line (the broken aescbc value), none for the values not checked.
    const table = await runCli(['verify', ...base]);
    assert.equal(table.code, 3);
    assert.equal(table.stdout.split('\n').filter((l) => l.includes('kubectl delete --raw')).length, 1, table.stdout);
    assert.match(table.stdout, /^could not check 31 values: kms v2 provider "down-kms"/m);
    assert.match(table.stdout, /NOT known to be lost: do not delete them/);
    assert.match(table.stdout, /^INCOMPLETE: 31 values could not be checked \(KMS plugin unreachable\); of the rest: 1 stale \(run atrest rewrite\), 1 undecryptable/m);

    const status = await runCli(['status', ...base, '-o', 'json']);
    assert.equal(status.code, 3, status.stderr);
    const statusReport = JSON.parse(status.stdout) as StatusReport;
    assert.equal(statusReport.verify?.resources[0]?.unchecked, VALUES + 1);
    assert.ok(statusReport.problems.includes(`kms v2 provider "${KMS}" (plugin unix://${socket}): plugin unreachable`), statusReport.problems.join('; '));
    assert.ok(statusReport.problems.includes('31 values could not be checked (KMS plugin unreachable; not known to be lost)'));

    const many = await runCli(['decrypt', ...base, '--prefix', '/registry/secrets/', '-o', 'json']);
    assert.equal(many.code, 3, many.stderr);
    assert.match(many.stderr, /1 values decrypted, 1 undecryptable, 1 stale, 31 not checked/);
    assert.match(many.stderr, /could not check 31 values \(not known to be lost; they are left out of the output\): kms v2 provider "down-kms"/);
    const one = await runCli(['decrypt', ...base, '/registry/secrets/default/s00']);
    assert.equal(one.code, 3, one.stderr);
    assert.match(one.stderr, /^atrest decrypt: could not complete: could not check \/registry\/secrets\/default\/s00 \(not known to be lost\): kms v2 provider "down-kms"/);
    assert.equal(one.stdout, '');

    // rewrite with another write provider: the kms values cannot be read, so the run is incomplete.
    const aesgcmFirst = join(dir, 'aesgcm-first.yaml');
    await writeFile(aesgcmFirst, config(socket, `      - aesgcm: { keys: [{ name: k2, secret: "${AESGCM_KEY}" }] }\n`));
    const rewrite = await runCli(['rewrite', '--encryption-provider-config', aesgcmFirst, '--data-dir', dir, '--dry-run', '-o', 'json']);
    assert.equal(rewrite.code, 3, rewrite.stderr + rewrite.stdout);
    const summary = JSON.parse(rewrite.stdout) as { undecryptable: Array<{ key: string }>; notChecked: Array<{ values: number }>; complete: boolean };
    assert.deepEqual(summary.undecryptable.map((u) => u.key), [broken]);
    assert.equal(summary.notChecked[0]?.values, VALUES + 1);
    assert.equal(summary.complete, false);

    // A store that cannot be read: exit 3, and the textfile says the check could not complete (no counts).
    const junkDir = join(dir, 'junk');
    await mkdir(junkDir);
    await writeFile(join(junkDir, 'store.db'), 'this is not a database');
    const junkProm = join(promDir, 'junk.prom');
    const junk = await runCli(['verify', '--encryption-provider-config', configPath, '--data-dir', junkDir, '--textfile', junkProm]);
    assert.equal(junk.code, 3, junk.stderr);
    assert.match(junk.stderr, /^atrest verify: could not complete: cannot open the embedded store .*junk\/store\.db/m);
    const junkText = await readFile(junkProm, 'utf8');
    assert.match(junkText, /^atrest_verify_check_complete 0$/m);
    assert.doesNotMatch(junkText, /_values[{ ]/);
    // One the store refuses to open for writing (a file it may not write: SQLITE_CANTOPEN, READ_ONLY): a
    // rewrite cannot complete either (it used to exit 1, which says stale values were found).
    const lockedDir = join(dir, 'locked');
    await mkdir(lockedDir);
    await symlink('/proc/version', join(lockedDir, 'store.db'));
    const locked = await runCli(['rewrite', '--encryption-provider-config', configPath, '--data-dir', lockedDir]);
    assert.equal(locked.code, 3, locked.stderr);
    assert.match(locked.stderr, /^atrest rewrite: could not complete: cannot open the embedded store .*locked\/store\.db: /m);

    // The plugin back: every value is there, as before (nothing was lost).
    plugin = await startPlugin(keyFile, socket);
    const back = await runCli(['verify', ...base, '-o', 'json']);
    assert.equal(back.code, 1, back.stderr);
    assert.deepEqual((JSON.parse(back.stdout) as VerifyReport).resources[0]!.undecryptable.map((u) => u.key), [broken, tampered]);
  } finally {
    await plugin?.close();
    await cleanup();
  }
});

test('an etcd that cannot be reached: exit 3 for verify, status, rewrite and decrypt (it used to be 1, like a stale value)', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-no-etcd-');
  try {
    const configPath = join(dir, 'enc.yaml');
    await writeFile(configPath, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc: { keys: [{ name: key1, secret: "${AESCBC_KEY}" }] }
`);
    // A port nothing listens on: connections are refused.
    const etcd = ['--etcd-servers', `http://127.0.0.1:${await freePort()}`];
    const base = ['--encryption-provider-config', configPath, ...etcd];
    const runs = await Promise.all([
      runCli(['verify', ...base, '--textfile', join(dir, 'v.prom')]),
      runCli(['status', ...base]),
      runCli(['rewrite', ...base]),
      runCli(['decrypt', ...base, '/registry/secrets/default/s']),
    ]);
    for (const [i, r] of runs.entries()) assert.equal(r.code, 3, `${['verify', 'status', 'rewrite', 'decrypt'][i]!}: ${r.stderr}${r.stdout}`);
    assert.match(runs[0]!.stderr, /^atrest verify: could not complete: the store could not be read .*ECONNREFUSED/m);
    assert.match(await readFile(join(dir, 'v.prom'), 'utf8'), /^atrest_verify_check_complete 0$/m);
    assert.match(runs[1]!.stdout, /could not read the store: /);
    assert.match(runs[1]!.stdout, /^NOT OK: the store could not be read, no values were checked$/m);
  } finally {
    await cleanup();
  }
});
