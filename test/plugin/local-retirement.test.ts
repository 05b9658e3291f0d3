// Retiring, restoring and purging local KEK versions, and the plugin's scheduled rotation
// (--rotation-period): the key file on disk, the serving backend, and a real `atrest kms-plugin`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { BackendError, type KekBackend } from '../../src/plugin/backend.js';
import { localBackend } from '../../src/plugin/backends/local.js';
import { rotateIfDue } from '../../src/plugin/local/rotation-schedule.js';
import { newRegistry } from '../../src/metrics.js';
import { PluginProcess, TestKmsClient, makeTempDir, runAtrest, waitFor } from '../helpers/plugin.js';
import { inProcessLogger } from '../helpers/test-log.js';

const ctx = { log: inProcessLogger('kms-plugin') };
const DAY = 24 * 3600 * 1000;

async function withKeyFile(fn: (keyFile: string, dir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await makeTempDir();
  try {
    await fn(join(dir, 'kek.json'), dir);
  } finally {
    await cleanup();
  }
}

async function withOpen(options: Record<string, string>, fn: (kek: KekBackend, lines: string[]) => Promise<void>): Promise<void> {
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } });
  const kek = await localBackend.open(options, { log, metrics: newRegistry() });
  try {
    await fn(kek, lines);
  } finally {
    await kek.close();
  }
}

const events = (lines: string[]): string[] => lines.map((l) => String((JSON.parse(l) as { event?: string }).event));
const states = async (keyFile: string): Promise<string[]> => (await localBackend.listKeys!({ keyFile }, ctx)).map((v) => `v${v.version}:${v.state}`);

test('a retired version no longer unwraps (the error says how to restore it); restore within the grace period brings it back', async () => {
  await withKeyFile(async (keyFile) => {
    const v1 = await localBackend.initKey({ keyFile }, ctx);
    await withOpen({ keyFile }, async (kek, lines) => {
      const old = await kek.encrypt(Buffer.from('dek-under-v1'));
      const v2 = await localBackend.rotateKey({ keyFile }, ctx);
      assert.deepEqual(await states(keyFile), ['v1:active', 'v2:current']);

      await assert.rejects(localBackend.retireKey!({ keyFile }, ctx, v2), /is the current version .*: it cannot be retired/);
      await assert.rejects(localBackend.retireKey!({ keyFile }, ctx, 'local:v9:0000000000000000'), (e) => e instanceof BackendError && e.code === 'KEY_NOT_FOUND');

      const now = Date.now();
      const info = await localBackend.retireKey!({ keyFile, retirementGracePeriod: '48h' }, ctx, v1);
      assert.equal(info.state, 'retired');
      assert.ok(info.purgeAfter! - info.retiredAt! === 2 * DAY && info.retiredAt! >= now - 1000, JSON.stringify(info));
      assert.deepEqual(await states(keyFile), ['v1:retired', 'v2:current']);
      assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
      const file = JSON.parse(await readFile(keyFile, 'utf8')) as { versions: Array<Record<string, unknown>> };
      assert.equal(typeof file.versions[0]!['key'], 'string', 'the retired key material stays in the file for the grace period');
      // Retiring it again changes nothing.
      const bytes = await readFile(keyFile);
      await localBackend.retireKey!({ keyFile }, ctx, v1);
      assert.deepEqual(await readFile(keyFile), bytes);

      await kek.refresh();
      assert.ok(events(lines).includes('key-versions-retired'), lines.join(''));
      await assert.rejects(kek.decrypt(old.ciphertext), (e: Error) => {
        // KEY_RETIRED: the plugin answers FailedPrecondition, which atrest verify reports as "restore it", never as lost.
        assert.ok(e instanceof BackendError && e.code === 'KEY_RETIRED', String(e));
        assert.match(e.message, new RegExp(`retired at .*atrest kms-plugin restore-key --backend local --key-file ${keyFile} --key-id ${v1}.*possible until`));
        return true;
      });
      await assert.rejects(kek.decrypt(old.ciphertext), /retired/);
      assert.equal(events(lines).filter((e) => e === 'retired-key-used').length, 1, 'logged once per version');

      const restored = await localBackend.restoreKey!({ keyFile }, ctx, v1);
      assert.equal(restored.state, 'active');
      assert.deepEqual(await states(keyFile), ['v1:active', 'v2:current']);
      await kek.refresh();
      assert.equal((await kek.decrypt(old.ciphertext)).toString(), 'dek-under-v1');
    });
  });
});

test('after the grace period a retired version cannot be restored and the next rewrite drops it from the file', async () => {
  await withKeyFile(async (keyFile) => {
    const v1 = await localBackend.initKey({ keyFile }, ctx);
    await withOpen({ keyFile }, async (kek) => {
      const old = await kek.encrypt(Buffer.from('dek-under-v1'));
      await localBackend.rotateKey({ keyFile }, ctx);
      await localBackend.retireKey!({ keyFile, retirementGracePeriod: '1ms' }, ctx, v1);
      assert.deepEqual(await states(keyFile), ['v1:retired', 'v2:current']);
      await new Promise((r) => setTimeout(r, 20));
      await assert.rejects(localBackend.restoreKey!({ keyFile }, ctx, v1), /grace period ended at .* cannot be restored/);
      // Still in the file: not lost yet (KEY_RETIRED), and the message says restore-key will not help.
      await kek.refresh();
      await assert.rejects(kek.decrypt(old.ciphertext), (e: Error) => e instanceof BackendError && e.code === 'KEY_RETIRED'
        && /grace period ended at .*restore-key no longer restores it .*copy the file now/.test(e.message));
      const v3 = await localBackend.rotateKey({ keyFile }, ctx);
      const versions = await localBackend.listKeys!({ keyFile }, ctx);
      assert.deepEqual(versions.map((v) => v.keyId), [versions[0]!.keyId, v3]);
      assert.ok(!versions.some((v) => v.keyId === v1), 'v1 purged');
      assert.doesNotMatch(await readFile(keyFile, 'utf8'), /"retired"/);
      // Gone from the file: the ciphertext is refused for good (undecryptable).
      await kek.refresh();
      await assert.rejects(kek.decrypt(old.ciphertext), (e: Error) => e instanceof BackendError && e.code === 'INVALID_CIPHERTEXT');
    });
  });
});

test('retirement fields are checked: both or neither, RFC 3339, and never on the current version', async () => {
  await withKeyFile(async (keyFile) => {
    await localBackend.initKey({ keyFile }, ctx);
    await localBackend.rotateKey({ keyFile }, ctx);
    const good = JSON.parse(await readFile(keyFile, 'utf8')) as { versions: Array<Record<string, unknown>> };
    const bad = async (edit: (f: typeof good) => void, message: RegExp): Promise<void> => {
      const f = structuredClone(good);
      edit(f);
      await writeFile(keyFile, JSON.stringify(f));
      await assert.rejects(localBackend.open({ keyFile }, ctx), message);
    };
    await bad((f) => { f.versions[0]!['retired'] = '2026-01-01T00:00:00Z'; }, /versions\[0\]\.purgeAfter must be an RFC 3339 time/);
    await bad((f) => { f.versions[0]!['retired'] = 'yesterday'; f.versions[0]!['purgeAfter'] = '2026-01-01T00:00:00Z'; }, /versions\[0\]\.retired must be an RFC 3339 time/);
    await bad((f) => { f.versions[1]!['retired'] = '2026-01-01T00:00:00Z'; f.versions[1]!['purgeAfter'] = '2026-02-01T00:00:00Z'; }, /version 2, the highest, is retired/);
    await assert.rejects(localBackend.retireKey!({ keyFile, retirementGracePeriod: 'soon' }, ctx, 'x'), /--retirement-grace-period: time: invalid duration "soon"/);
  });
});

test('rotateIfDue adds a version only once the current one is a period old, and once between plugins sharing the file', async () => {
  await withKeyFile(async (keyFile) => {
    await localBackend.initKey({ keyFile }, ctx);
    const created = Date.parse(String((JSON.parse(await readFile(keyFile, 'utf8')) as { versions: Array<{ created: string }> }).versions[0]!.created));
    assert.equal(await rotateIfDue(keyFile, DAY, created + DAY - 1), undefined);
    const added = await rotateIfDue(keyFile, DAY, created + DAY);
    assert.equal(added?.version, 2);
    assert.equal(await rotateIfDue(keyFile, DAY, created + DAY + 1), undefined, 'v2 is young');
    assert.deepEqual(await states(keyFile), ['v1:active', 'v2:current']);
    // Plugins sharing the file, due at the same moment: one version between them.
    const later = Date.now() + DAY;
    const results = await Promise.all(Array.from({ length: 4 }, () => rotateIfDue(keyFile, DAY, later)));
    assert.equal(results.filter((r) => r !== undefined).length, 1, 'exactly one added a version');
    assert.deepEqual(await states(keyFile), ['v1:active', 'v2:active', 'v3:current']);
  });
});

test('--rotation-period: the serving backend rotates by itself; a bad period or a read-only directory is refused at start', async () => {
  await withKeyFile(async (keyFile, dir) => {
    const v1 = await localBackend.initKey({ keyFile }, ctx);
    await assert.rejects(localBackend.open({ keyFile, rotationPeriod: '10ms' }, ctx), /--rotation-period 10ms: must be at least 1s/);
    await assert.rejects(localBackend.open({ keyFile, rotationPeriod: 'monthly' }, ctx), /--rotation-period: time: invalid duration "monthly"/);
    await withOpen({ keyFile, rotationPeriod: '1s' }, async (kek, lines) => {
      const rotated = await waitFor('a scheduled rotation', async () => ((await kek.currentKeyId()) !== v1 ? kek.currentKeyId() : undefined), 20_000);
      assert.match(rotated, /^local:v[2-9]:/);
      assert.ok(events(lines).includes('scheduled-rotation'), lines.join(''));
    });
    if (process.getuid?.() !== 0) {
      const { chmod } = await import('node:fs/promises');
      await chmod(dir, 0o500);
      try {
        await assert.rejects(localBackend.open({ keyFile, rotationPeriod: '1h' }, ctx), /--rotation-period: the directory of key file .* is not writable/);
      } finally {
        await chmod(dir, 0o700);
      }
    }
  });
});

test('atrest kms-plugin with ATREST_ROTATION_PERIOD rotates while serving, logs and counts it; list-keys and restore-key', async () => {
  const { dir, cleanup } = await makeTempDir();
  const keyFile = join(dir, 'kek.json');
  const socket = join(dir, 'kms.sock');
  let plugin: PluginProcess | undefined;
  const client = TestKmsClient.forPath(socket);
  try {
    const init = await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
    assert.equal(init.code, 0, init.stderr);
    const v1 = init.stdout.trim();
    // A DEK wrapped under v1 (the plugin may rotate before it answers its first call).
    let old: Buffer | undefined;
    await withOpen({ keyFile }, async (kek) => { old = (await kek.encrypt(Buffer.from('seed-under-v1'))).ciphertext; });
    plugin = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile, '--refresh-interval', '100', '--health-listen', '127.0.0.1:0'],
      { ATREST_ROTATION_PERIOD: '3s' });
    const start = await plugin.waitForEvent('start');
    const scheduled = await plugin.waitForEvent('scheduled-rotation');
    await plugin.waitForEvent('rotation');
    assert.equal(scheduled['previousKeyId'], v1);
    const v2 = String(scheduled['keyId']);
    assert.match(v2, /^local:v2:/);
    assert.notEqual((await client.status()).keyId, v1);
    const metrics = await (await fetch(`http://${String(start['healthListen'])}/metrics`)).text();
    assert.match(metrics, /^atrest_kms_plugin_key_rotations_total [1-9]/m);
    assert.match(metrics, /^atrest_kms_plugin_next_rotation_timestamp_seconds \d/m);
    assert.match(metrics, /^atrest_kms_plugin_scheduled_rotation_failures_total 0$/m);

    const listed = await runAtrest(['kms-plugin', 'list-keys', '--key-file', keyFile, '-o', 'json']);
    assert.equal(listed.code, 0, listed.stderr);
    const versions = JSON.parse(listed.stdout) as Array<{ keyId: string; state: string }>;
    assert.deepEqual(versions.slice(0, 2).map((v) => v.keyId), [v1, v2]);
    assert.equal(versions[0]!.state, 'active');

    // Retire v1 (what `atrest rotate` does last) and restore it with the CLI, while the plugin may
    // rotate again: both rewrites of the file are made again on its new content.
    await localBackend.retireKey!({ keyFile }, ctx, v1);
    await waitFor('the plugin to stop unwrapping with v1', () => client.decrypt(old!, v1).then(() => false, () => true));
    const restore = await runAtrest(['kms-plugin', 'restore-key', '--key-file', keyFile, '--key-id', v1]);
    assert.equal(restore.code, 0, restore.stderr);
    assert.equal(restore.stdout.trim(), `${v1} active`);
    const back = await waitFor('v1 to unwrap again', () => client.decrypt(old!, v1).catch(() => undefined));
    assert.equal(Buffer.from(back.plaintext).toString(), 'seed-under-v1');
    const table = await runAtrest(['kms-plugin', 'list-keys', '--key-file', keyFile]);
    assert.match(table.stdout, /^VERSION\s+STATE\s+KEY ID\s+CREATED\s+RETIRED\s+PURGE AFTER$/m);
  } finally {
    client.close();
    if (plugin) assert.equal(await plugin.stop(), 0);
    await cleanup();
  }
});
