// `atrest status` (issue #15): KMS provider and plugin health with their key_id hash, the providers
// per resource and the verify counts, as a table and as JSON; exit 1 for stale values, 3 when a
// plugin is down (the check cannot complete), 2 for a bad configuration.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StatusReport } from '../../src/tools/status.js';
import { freePort } from '../helpers/etcd.js';
import { makeTempDir, PluginProcess, runAtrest } from '../helpers/plugin.js';
import { apiRequest, kmsV2ProviderLine, startTestServer, writeKmsV2Config } from '../helpers/server.js';
import { registerTestSecret } from '../helpers/test-log.js';


test('atrest status: health, key_id, providers per resource and verify counts; exit 1 on stale values, 3 with a plugin down', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-status-');
  let plugin: PluginProcess | undefined;
  try {
    const keyFile = join(dir, 'kek.json');
    assert.equal((await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile])).code, 0);
    const v = (JSON.parse(readFileSync(keyFile, 'utf8')) as { versions: Array<{ version: number; id: string; created: string }> }).versions[0]!;
    const keyIdHash = `sha256:${createHash('sha256').update(`local:v${v.version}:${v.id}`).digest('hex')}`;
    const socket = join(dir, 'kms.sock');
    const healthPort = await freePort();
    plugin = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile, '--health-listen', `127.0.0.1:${healthPort}`]);
    await plugin.waitForEvent('start');

    const kms = kmsV2ProviderLine(socket);
    const config = writeKmsV2Config(dir, socket);
    const dataDir = join(dir, 'data');
    const server = await startTestServer({ dataDir, encryptionProviderConfig: config }, join(dir, 'server'));
    try {
      for (let i = 0; i < 3; i++) {
        const r = await apiRequest(server.server, 'POST', '/api/v1/namespaces/default/secrets', { body: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: `s${i}` }, stringData: { k: `v${i}` } }) });
        assert.equal(r.status, 201, r.text);
      }
      const r = await apiRequest(server.server, 'POST', '/api/v1/namespaces/default/configmaps', { body: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c0' }, data: { k: 'v' } }) });
      assert.equal(r.status, 201, r.text);
    } finally {
      await server.server.close();
    }
    const base = ['status', '--encryption-provider-config', config, '--data-dir', dataDir, '--kms-plugin-health', `127.0.0.1:${healthPort}`];

    const table = await runAtrest(base);
    assert.equal(table.code, 0, table.stderr + table.stdout);
    const out = table.stdout;
    assert.match(out, new RegExp(`^atrest\\s+v2\\s+ok\\s+${keyIdHash}\\s+secrets$`, 'm'));
    assert.match(out, new RegExp(`^127\\.0\\.0\\.1:${healthPort}\\s+ok\\s+${keyIdHash}\\s+${v.created.replace(/\./g, '\\.')}\\s+0$`, 'm'));
    assert.match(out, /^secrets\s+kms v2:atrest, identity$/m);
    assert.match(out, /^configmaps\s+identity$/m);
    assert.match(out, /^RESOURCE +TOTAL +CURRENT +STALE +PLAINTEXT +UNDECRYPTABLE +RETIRED KEK +NOT CHECKED$/m);
    assert.match(out, /^secrets\s+3\s+3\s+0\s+0\s+0\s+0\s+0$/m);
    assert.match(out, /^configmaps\s+1\s+1\s+0\s+1\s+0\s+0\s+0$/m);
    assert.match(out, /^OK$/m);

    // A new write provider first: the kms values are stale now (exit 1), key names shown, never key bytes.
    const secret = randomBytes(32).toString('base64');
    registerTestSecret(Buffer.from(secret, 'base64'), 'aesgcm-key');
    const rotated = join(dir, 'rotated.yaml');
    writeFileSync(rotated, readFileSync(config, 'utf8').replace(`${kms}\n`, `      - aesgcm: { keys: [{ name: k2, secret: "${secret}" }] }\n${kms}\n`));
    const json = await runAtrest(['status', '--encryption-provider-config', rotated, '--data-dir', dataDir, '-o', 'json']);
    assert.equal(json.code, 1, json.stderr + json.stdout);
    assert.ok(!json.stdout.includes(secret));
    const report = JSON.parse(json.stdout) as StatusReport;
    assert.equal(report.ok, false);
    assert.deepEqual(report.problems, ['3 stale values (atrest rewrite)']);
    assert.deepEqual(report.kmsProviders, []);
    assert.deepEqual(report.resources.find((r) => r.resource === 'secrets')?.providers, ['aesgcm:k2', 'kms v2:atrest', 'identity']);
    const secrets = report.verify?.resources.find((r) => r.resource === 'secrets');
    assert.equal(secrets?.stale, 3);
    assert.deepEqual(secrets?.writers, { [`kms v2:atrest:${keyIdHash}`]: 3 });

    // The plugin down: the provider and the plugin endpoint are FAILED, the check could not complete
    // (exit 3, issue #20) and the summary line names what is wrong; --no-verify (= --verify=false)
    // opens no store at all, so a data dir that does not exist is no error.
    assert.equal(await plugin.stop(), 0);
    for (const noVerify of [['--no-verify'], ['--verify=false']]) {
      const down = await runAtrest(['status', '--encryption-provider-config', config, '--data-dir', join(dir, 'no-such-dir'), '--kms-plugin-health', `127.0.0.1:${healthPort}`, ...noVerify]);
      assert.equal(down.code, 3, down.stderr + down.stdout);
      assert.match(down.stdout, /^atrest\s+v2\s+FAILED: .*kms/im);
      assert.match(down.stdout, new RegExp(`^127\\.0\\.0\\.1:${healthPort}\\s+FAILED: cannot reach`, 'm'));
      assert.doesNotMatch(down.stdout, /STORED VALUES/);
      assert.ok(down.stdout.trimEnd().endsWith(`NOT OK: kms v2 provider "atrest" (plugin unix://${socket}): plugin unreachable; plugin 127.0.0.1:${healthPort} is not healthy`), down.stdout);
    }

    const bad = await runAtrest(['status', '--encryption-provider-config', join(dir, 'missing.yaml'), '--data-dir', dataDir]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^atrest status: .*missing\.yaml/m);
  } finally {
    await plugin?.stop();
    await cleanup();
  }
});
