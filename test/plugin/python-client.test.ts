// The plugin (the real CLI process, from source) called by a client that shares nothing with
// atrest's gRPC stack: Debian's python3-grpcio with stubs generated from proto/ at test time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { localBackend } from '../../src/plugin/backends/local.js';
import { startPluginServer } from '../../src/plugin/server.js';
import { makeTempDir, PluginProcess, runAtrest } from '../helpers/plugin.js';
import { inProcessLogger } from '../helpers/test-log.js';

const PYTHON = '/usr/bin/python3';
const CLIENT = fileURLToPath(new URL('../fixtures/python/plugin_client.py', import.meta.url));
const PROTO_DIR = fileURLToPath(new URL('../../proto', import.meta.url));

function runPython(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [CLIENT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A key file made with `init-key` and the real plugin CLI serving it on a UNIX socket, for `body`. */
async function withPluginProcess(body: (p: { socket: string; keyFile: string; keyId: string; plugin: PluginProcess }) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await makeTempDir();
  const keyFile = join(dir, 'kek.json');
  const socket = join(dir, 'kms.sock');
  let plugin: PluginProcess | undefined;
  try {
    const init = await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
    assert.equal(init.code, 0, init.stderr);
    const keyId = init.stdout.trim();
    plugin = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile]);
    await plugin.waitForEvent('start');
    await body({ socket, keyFile, keyId, plugin });
  } finally {
    await plugin?.stop();
    await cleanup();
  }
}

test('python3-grpcio client: Version/Status, v1beta1 and v2 round trips, tampered ciphertext rejected, layout cross-checked', async () => {
  await withPluginProcess(async ({ socket, keyFile, keyId }) => {
    const run = await runPython(['--target', `unix:${socket}`, '--proto-dir', PROTO_DIR, '--key-file', keyFile]);
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.deepEqual(out.version, { version: 'v1beta1', runtime_name: 'atrest', runtime_version: '0.1.0' });
    assert.equal(out.v1_roundtrip, true);
    assert.equal(out.v1_wrong_version_code, 'INVALID_ARGUMENT');
    assert.equal(out.v1_tampered_code, 'INVALID_ARGUMENT');
    assert.deepEqual(out.status, { version: 'v2beta1', healthz: 'ok', key_id: keyId });
    assert.equal(out.v2_key_id, keyId);
    assert.equal(out.v2_ciphertext_len, 32 + 41);
    assert.equal(out.v2_annotations, 0);
    assert.equal(out.v2_roundtrip, true);
    assert.equal(out.v2_tampered_code, 'INVALID_ARGUMENT');
    assert.equal(out.v2_oversized_code, 'INVALID_ARGUMENT');
    assert.equal(out.v2alpha1_status_version, 'v2alpha1');
    assert.equal(out.independent_key_id_matches, true);
    assert.equal(out.independent_decrypt, true);
    assert.equal(out.independent_encrypt_accepted, true);
  });
});

test('python3-grpcio client over an abstract socket (107-byte name: what a non-Node peer reaches while Node.js 20 pads abstract addresses)', async () => {
  const { dir, cleanup } = await makeTempDir();
  const ctx = { log: inProcessLogger('kms-plugin') };
  try {
    const keyFile = join(dir, 'kek.json');
    const keyId = await localBackend.initKey({ keyFile }, ctx);
    const backend = await localBackend.open({ keyFile }, ctx);
    const name = `atrest-${randomBytes(64).toString('hex')}`.slice(0, 107);
    const server = await startPluginServer({ listen: `unix:///@${name}`, backend, log: ctx.log });
    try {
      const run = await runPython(['--target', `unix-abstract:${name}`, '--proto-dir', PROTO_DIR, '--key-file', keyFile]);
      assert.equal(run.code, 0, run.stderr);
      const out = JSON.parse(run.stdout);
      assert.equal(out.status.key_id, keyId);
      assert.equal(out.status.healthz, 'ok');
      assert.equal(out.v1_roundtrip, true);
      assert.equal(out.v2_roundtrip, true);
      assert.equal(out.v2_tampered_code, 'INVALID_ARGUMENT');
      assert.equal(out.independent_decrypt, true);
    } finally {
      await server.close();
      await backend.close();
    }
  } finally {
    await cleanup();
  }
});

test('python3-grpcio with grpc.default_authority = the socket path, the %2F-encoded path, empty, and unset: every call answered', async () => {
  await withPluginProcess(async ({ socket, keyId, plugin }) => {
    const authorities = [socket, encodeURIComponent(socket), '', '(default)'];
    const run = await runPython(['--target', `unix:${socket}`, '--proto-dir', PROTO_DIR, ...authorities.flatMap((a) => ['--authority', a])]);
    assert.equal(run.code, 0, run.stderr);
    const out = JSON.parse(run.stdout) as { by_authority: Record<string, Record<string, unknown>> };
    for (const authority of authorities) {
      assert.deepEqual(out.by_authority[authority], {
        version: 'v1beta1',
        v1_roundtrip: true,
        status: { version: 'v2beta1', healthz: 'ok', key_id: keyId },
        v2_key_id: keyId,
        v2_roundtrip: true,
      }, `grpc.default_authority ${JSON.stringify(authority)}`);
    }
    // The path and the empty authority were repaired, once per connection; the others needed nothing.
    const repaired = plugin.logs.filter((l) => l.event === 'authority-repaired');
    assert.deepEqual(repaired.map((l) => [l['problem'], l['authority']]), [['invalid-characters', socket], ['empty', '']]);
  });
});
