// The plugin as kube-apiserver uses it: the shipped EncryptionConfigurations (docs/deploy, endpoint
// pointed at a test socket) drive atrest's kube-compatible KMS client (`atrest encrypt` /
// `atrest decrypt`: Status checks, DEK/seed generation, envelope formats) against the real plugin
// process. After rotate-key, values written before read back as stale, as kube-apiserver reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir, PluginProcess, runAtrest, TestKmsClient, waitFor } from '../helpers/plugin.js';

const DEPLOY = fileURLToPath(new URL('../../docs/deploy/', import.meta.url));

test('docs/deploy EncryptionConfigurations (kms v2 and v1) write and read through the plugin; a rotation makes old values stale', async () => {
  const { dir, cleanup } = await makeTempDir();
  const keyFile = join(dir, 'kek.json');
  const socket = join(dir, 'kms.sock');
  let plugin: PluginProcess | undefined;
  try {
    assert.equal((await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile])).code, 0);
    plugin = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile, '--refresh-interval', '100']);
    await plugin.waitForEvent('start');
    const storageKey = '/registry/secrets/default/db-password';
    const written: Record<string, string> = {};
    for (const version of ['v2', 'v1']) {
      const shipped = await readFile(join(DEPLOY, `encryption-config-${version}.yaml`), 'utf8');
      assert.ok(shipped.includes('unix:///var/run/atrest/kms.sock'));
      const config = join(dir, `enc-${version}.yaml`);
      await writeFile(config, shipped.replaceAll('unix:///var/run/atrest/kms.sock', `unix://${socket}`));
      const plainFile = join(dir, `plain-${version}`);
      await writeFile(plainFile, `s3cret via kms ${version}`);
      const out = join(dir, `stored-${version}`);
      const enc = await runAtrest(['encrypt', '--encryption-provider-config', config, '--key', storageKey, '--in', plainFile, '--out', out]);
      assert.equal(enc.code, 0, enc.stderr);
      const stored = await readFile(out);
      assert.ok(stored.subarray(0, 32).toString('latin1').startsWith(`k8s:enc:kms:${version}:atrest:`), stored.subarray(0, 32).toString('latin1'));
      assert.ok(!stored.includes(Buffer.from('s3cret')));
      const dec = await runAtrest(['decrypt', '--encryption-provider-config', config, '--key', storageKey, '--in', out]);
      assert.equal(dec.code, 0, dec.stderr);
      assert.equal(dec.stdout, `s3cret via kms ${version}`);
      assert.match(dec.stderr, /stale: no/);
      written[version] = out;
    }

    const rotated = (await runAtrest(['kms-plugin', 'rotate-key', '--key-file', keyFile])).stdout.trim();
    const client = TestKmsClient.forPath(socket);
    try {
      await waitFor('the plugin to report the rotated key_id', async () => (await client.status()).keyId === rotated);
    } finally {
      client.close();
    }
    const again = await runAtrest(['decrypt', '--encryption-provider-config', join(dir, 'enc-v2.yaml'), '--key', storageKey, '--in', written['v2']!]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, 's3cret via kms v2');
    assert.match(again.stderr, /stale: yes/);
    assert.equal(await plugin.stop(), 0);
  } finally {
    await plugin?.stop();
    await cleanup();
  }
});
