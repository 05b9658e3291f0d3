// `atrest dev` (npm start) end to end: the real kubectl creates a secret, the raw stored value is
// kms v2 ciphertext, Ctrl-C stops cleanly, and a second start reuses the data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import { cliSource, makeTempDir, repoRoot, runAtrest } from '../helpers/plugin.js';
import { captureLog, registerKeyFile } from '../helpers/test-log.js';

interface DevProcess {
  kubeconfig: string;
  stop(): Promise<number | null>;
}

async function startDev(dataDir: string): Promise<DevProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', cliSource, 'dev', '--data-dir', dataDir, '--secure-port', '0'], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  captureLog('dev', child.stderr);
  child.stderr.resume();
  const kubeconfig = await new Promise<string>((resolve, reject) => {
    const lines: string[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      const m = /^kubeconfig: (.+)$/.exec(line);
      if (m?.[1]) resolve(m[1]);
    });
    void exited.then((code) => reject(new Error(`atrest dev exited ${code} before serving:\n${lines.join('\n')}`)));
  });
  registerKeyFile(join(dataDir, 'kek.json'));
  return {
    kubeconfig,
    stop: async () => {
      child.kill('SIGINT');
      return exited;
    },
  };
}

test('atrest dev serves kubectl with kms v2 on the embedded store, stops on Ctrl-C and reuses its data', { skip: !kubectlAvailable() && 'kubectl is not installed' }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-dev-');
  const dataDir = join(dir, 'data');
  let dev = await startDev(dataDir);
  const kubectl = new Kubectl(dev.kubeconfig);
  try {
    await kubectl.ok(['create', 'secret', 'generic', 's', '--from-literal=k=value-dev-1']);
    const raw = await runAtrest(['get-raw', '/registry/secrets/default/s', '--data-dir', dataDir]);
    assert.equal(raw.code, 0, raw.stderr);
    assert.ok(raw.stdout.startsWith('k8s:enc:kms:v2:atrest-dev:'), raw.stdout.slice(0, 40));
    assert.ok(!raw.stdout.includes('value-dev-1'));
    assert.equal(await dev.stop(), 0);
    assert.equal(existsSync(join(dataDir, 'kms.sock')), false, 'the plugin socket is removed on stop');

    dev = await startDev(dataDir);
    const again = new Kubectl(dev.kubeconfig);
    const value = await again.ok(['get', 'secret', 's', '-o', 'jsonpath={.data.k}']);
    assert.equal(Buffer.from(value, 'base64').toString(), 'value-dev-1');
    again.cleanup();
  } finally {
    await dev.stop();
    kubectl.cleanup();
    await cleanup();
  }
});
