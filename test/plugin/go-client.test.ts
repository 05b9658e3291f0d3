// The plugin (the real CLI process) called by a grpc-go client that dials it exactly as
// kube-apiserver 1.27 and 1.28 do (test/fixtures/go-kms-client: grpc.Dial of the bare socket path
// through a context dialer, WaitForReady, insecure; Debian's grpc-go 1.33, which like the
// grpc-go 1.51–1.56 those releases vendor sends the path as :authority), for KMS v1 and v2, and
// as kube 1.32+ dial KMS v2 (WithAuthority "localhost"). Before the HTTP/2 edge every one of the
// path-authority calls was reset (RST_STREAM PROTOCOL_ERROR).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { goFixtureBinary } from '../helpers/go.js';
import { makeTempDir, PluginProcess, runAtrest } from '../helpers/plugin.js';

function runClient(bin: string, args: string[]): Promise<{ code: number | null; out: Record<string, unknown>; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    // A client that never got an answer must not hang the test: kill it (its call deadline is 10 s).
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      let out: Record<string, unknown> = {};
      try {
        out = JSON.parse(stdout) as Record<string, unknown>;
      } catch {
        out = { unparsed: stdout };
      }
      resolve({ code, out, stderr });
    });
  });
}

test('grpc-go dialing the bare socket path as kube-apiserver 1.27/1.28 do: KMS v1 and v2 answered; kube 1.32+ v2 (localhost) too', async () => {
  const bin = goFixtureBinary('test/fixtures/go-kms-client');
  const { dir, cleanup } = await makeTempDir();
  const keyFile = join(dir, 'kek.json');
  const socket = join(dir, 'kms.sock');
  const endpoint = `unix://${socket}`;
  let plugin: PluginProcess | undefined;
  try {
    const init = await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
    assert.equal(init.code, 0, init.stderr);
    const keyId = init.stdout.trim();
    plugin = new PluginProcess(['--listen', endpoint, '--key-file', keyFile]);
    await plugin.waitForEvent('start');

    const [kmsV1, kmsV2, kmsV2Localhost] = await Promise.all([
      runClient(bin, ['-endpoint', endpoint, '-api', 'v1']),
      runClient(bin, ['-endpoint', endpoint, '-api', 'v2']),
      runClient(bin, ['-endpoint', endpoint, '-api', 'v2', '-authority', 'localhost']),
    ]);
    assert.equal(kmsV1.code, 0, JSON.stringify(kmsV1));
    assert.deepEqual(kmsV1.out['version'], { version: 'v1beta1', runtime_name: 'atrest', runtime_version: '0.1.0' });
    assert.equal(kmsV1.out['version_checked_by_interceptor'], true);
    assert.equal(kmsV1.out['roundtrip'], true, 'v1 Decrypt returns the plaintext Encrypt was given');
    assert.equal(kmsV1.out['cipher_len'], 32 + 41);
    for (const [what, run] of [['v2, path authority', kmsV2], ['v2, localhost', kmsV2Localhost]] as const) {
      assert.equal(run.code, 0, `${what}: ${JSON.stringify(run)}`);
      assert.deepEqual(run.out['status'], { version: 'v2beta1', healthz: 'ok', key_id: keyId }, what);
      assert.equal(run.out['key_id'], keyId, what);
      assert.equal(run.out['ciphertext_len'], 32 + 41, what);
      assert.equal(run.out['roundtrip'], true, `${what}: v2 Decrypt returns the plaintext`);
    }
    // The two path-authority connections were repaired and said so once each; the localhost one needed nothing.
    const repaired = plugin.logs.filter((l) => l.event === 'authority-repaired');
    assert.deepEqual(repaired.map((l) => [l['problem'], l['authority']]), [['invalid-characters', socket], ['invalid-characters', socket]]);
  } finally {
    await plugin?.stop();
    await cleanup();
  }
});

test('with --authority-repair=false (the listener before issue #19) the same kube 1.27/1.28 dial is reset: RST_STREAM PROTOCOL_ERROR', async () => {
  const bin = goFixtureBinary('test/fixtures/go-kms-client');
  const { dir, cleanup } = await makeTempDir();
  const keyFile = join(dir, 'kek.json');
  const endpoint = `unix://${join(dir, 'kms.sock')}`;
  let plugin: PluginProcess | undefined;
  try {
    const init = await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
    assert.equal(init.code, 0, init.stderr);
    plugin = new PluginProcess(['--listen', endpoint, '--key-file', keyFile, '--authority-repair=false']);
    await plugin.waitForEvent('start');
    const [kmsV2, kmsV2Localhost] = await Promise.all([
      runClient(bin, ['-endpoint', endpoint, '-api', 'v2']),
      runClient(bin, ['-endpoint', endpoint, '-api', 'v2', '-authority', 'localhost']),
    ]);
    assert.equal(kmsV2.code, 1, JSON.stringify(kmsV2));
    assert.equal(kmsV2.out['code'], 'Internal');
    assert.match(String(kmsV2.out['error']), /RST_STREAM with error code: PROTOCOL_ERROR/);
    assert.equal(kmsV2Localhost.code, 0, JSON.stringify(kmsV2Localhost));
    assert.equal(kmsV2Localhost.out['roundtrip'], true);
    assert.equal(plugin.logs.filter((l) => l.event === 'authority-repaired').length, 0);
  } finally {
    await plugin?.stop();
    await cleanup();
  }
});
