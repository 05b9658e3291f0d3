// python3-kubernetes (Debian's /usr/bin/python3) against atrest serve: CRUD, conflicts and watch.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.js';

const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('../fixtures/python/k8s_client.py', import.meta.url));
const execFileP = promisify(execFile);

async function pythonKubernetesAvailable(): Promise<boolean> {
  if (!existsSync(PYTHON)) return false;
  try {
    await execFileP(PYTHON, ['-c', 'import kubernetes']);
    return true;
  } catch {
    return false;
  }
}

describe('python3-kubernetes against atrest serve', async () => {
  // In CI every dependency is installed by .ci/run: a missing one must fail the test, not skip it.
  const available = process.env['CI'] === 'true' || (await pythonKubernetesAvailable());
  let ts: TestServer;

  before(async () => {
    if (available) ts = await startTestServer();
  });
  after(async () => {
    await ts?.close();
  });

  test('CRUD, 409 on a stale replace, 404, lists, watch with ADDED/DELETED, namespace deletion', { skip: !available && 'python3-kubernetes missing' }, async () => {
    const { stdout } = await execFileP(PYTHON, [SCRIPT, ts.server.kubeconfigPath], { timeout: 60_000 });
    const out = JSON.parse(stdout) as Record<string, unknown>;
    assert.deepEqual((out['created'] as Record<string, unknown>)['data'], { d: 'ZA==', k: 'dg==' });
    assert.equal((out['created'] as Record<string, unknown>)['type'], 'Opaque');
    assert.equal((out['created'] as Record<string, unknown>)['has_ts'], true);
    assert.deepEqual((out['replaced'] as Record<string, unknown>)['data'], { d: 'ZA==', k: 'dg==', e: 'ZQ==' });
    assert.equal((out['replaced'] as Record<string, unknown>)['uid'], (out['created'] as Record<string, unknown>)['uid']);
    assert.deepEqual(out['patched_labels'], { a: 'b', p: 'q' });
    assert.deepEqual(out['conflict'], { status: 409, reason: 'Conflict' });
    assert.equal(out['not_found'], 404);
    assert.deepEqual(out['configmap'], { x: 'y' });
    assert.deepEqual(out['list'], ['pysecret']);
    assert.equal(out['list_all_has_pysecret'], true);
    assert.deepEqual(out['namespaces'], ['default', 'kube-public', 'kube-system', 'pyns']);
    assert.deepEqual(out['events'], ['ADDED pysecret', 'ADDED w0', 'ADDED w1', 'DELETED w1']);
    assert.equal(out['namespace_gone'], 404);
  });
});
