// The plugin's rotation metrics follow a live `atrest kms-plugin rotate-key` (issue #15 follow-up):
// a running `atrest kms-plugin --health-listen` is scraped over HTTP before and after a rotation
// made by another process; key_id hash, creation time and the rotation counter must all move, and
// agree with the key file and with the key_id rotate-key printed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { makeTempDir, PluginProcess, runAtrest, waitFor } from '../helpers/plugin.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface RotationMetrics {
  keyIdHashes: string[];
  createdSeconds: number | undefined;
  rotations: number | undefined;
}

async function scrape(port: number): Promise<RotationMetrics> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  const keyIdHashes = [...text.matchAll(/^atrest_kms_plugin_current_key_id_hash_info\{key_id_hash="([^"]*)"\} 1$/gm)].map((m) => m[1]!);
  const created = /^atrest_kms_plugin_current_key_created_timestamp_seconds (\S+)$/m.exec(text);
  const rotations = /^atrest_kms_plugin_key_rotations_total (\S+)$/m.exec(text);
  return { keyIdHashes, createdSeconds: created ? Number(created[1]) : undefined, rotations: rotations ? Number(rotations[1]) : undefined };
}

const hashOf = (keyId: string): string => `sha256:${createHash('sha256').update(keyId).digest('hex')}`;

/** The `created` of each version in the key file, in epoch seconds (the file holds keys too: read only this). */
function createdSeconds(keyFile: string): number[] {
  const file = JSON.parse(readFileSync(keyFile, 'utf8')) as { versions: Array<{ created: string }> };
  return file.versions.map((v) => Date.parse(v.created) / 1000);
}

test('local backend: /metrics of a running plugin follows rotate-key (key_id hash, creation time, rotations)', { timeout: 60_000 }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-rotation-metrics-');
  let plugin: PluginProcess | undefined;
  try {
    const keyFile = join(dir, 'kek.json');
    const init = await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
    assert.equal(init.code, 0, init.stderr);
    const v1KeyId = init.stdout.trim();
    const port = await freePort();
    plugin = new PluginProcess(['--listen', `unix://${join(dir, 'kms.sock')}`, '--key-file', keyFile, '--health-listen', `127.0.0.1:${port}`, '--refresh-interval', '200']);
    await plugin.waitForEvent('start');

    const before = await waitFor('the metrics listener', () => scrape(port).catch(() => undefined));
    assert.deepEqual(before.keyIdHashes, [hashOf(v1KeyId)]);
    assert.equal(before.createdSeconds, createdSeconds(keyFile)[0]);
    assert.equal(before.rotations, 0);

    const rotate = await runAtrest(['kms-plugin', 'rotate-key', '--key-file', keyFile]);
    assert.equal(rotate.code, 0, rotate.stderr);
    const v2KeyId = rotate.stdout.trim();
    assert.notEqual(v2KeyId, v1KeyId);

    const after = await waitFor('the plugin to report the rotated key_id', async () => {
      const m = await scrape(port);
      return m.keyIdHashes.includes(hashOf(v2KeyId)) ? m : undefined;
    });
    assert.deepEqual(after.keyIdHashes, [hashOf(v2KeyId)], 'only the new key_id hash is current');
    const [v1Created, v2Created] = createdSeconds(keyFile);
    assert.equal(after.createdSeconds, v2Created, 'creation time of the new version');
    assert.ok(after.createdSeconds! > v1Created!, 'the creation time moved forward');
    assert.equal(after.rotations, 1);
    await plugin.waitForEvent('rotation');
  } finally {
    await plugin?.stop();
    await cleanup();
  }
});
