// `atrest serve` as a child process (node --import tsx src/cli/run.ts): flags, generated PKI/token/
// kubeconfig (0600, reused on restart), --token-auth-file, the automatic-reload flag rule.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import { captureLog } from '../helpers/test-log.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Child {
  proc: ChildProcessWithoutNullStreams;
  info: { url: string; port: number; kubeconfig: string };
  stderr(): string;
  stop(): Promise<number | null>;
}

function runServe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/run.ts', 'serve', '--secure-port', '0', ...args], {
    cwd: ROOT, env: { ...process.env, ATREST_LOG_LEVEL: 'info', ...env }, stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  captureLog('cli-serve', proc.stderr);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout });
    lines.once('line', (line) => resolve({
      proc,
      info: JSON.parse(line) as Child['info'],
      stderr: () => stderr,
      stop: async () => {
        proc.kill('SIGTERM');
        return exited;
      },
    }));
    void exited.then((code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
}

function runToExit(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/run.ts', 'serve', '--secure-port', '0', ...args], { cwd: ROOT });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    captureLog('cli-serve-fail', proc.stderr);
    proc.stdout.resume();
    proc.once('exit', (code) => resolve({ code, stderr }));
  });
}

describe('atrest serve (CLI)', { skip: !kubectlAvailable() && 'no kubectl' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-api-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('generates CA, serving cert, token and admin.kubeconfig (0600) once, reuses them, logs identity storage', async () => {
    const dataDir = join(dir, 'data');
    const first = await runServe(['--data-dir', dataDir]);
    const k = new Kubectl(first.info.kubeconfig);
    try {
      assert.equal(first.info.kubeconfig, join(dataDir, 'admin.kubeconfig'));
      assert.match(await k.ok(['get', 'ns']), /default\s+Active/);
      await k.ok(['create', 'secret', 'generic', 'persisted', '--from-literal=a=b']);
      for (const f of ['ca.key', 'serving.key', 'tokens.csv', 'admin.kubeconfig']) {
        assert.equal(statSync(join(dataDir, f)).mode & 0o777, 0o600, f);
      }
      assert.match(first.stderr(), /every object is stored unencrypted \(identity\)/);
    } finally {
      assert.equal(await first.stop(), 0);
    }
    const ca = readFileSync(join(dataDir, 'ca.crt'), 'utf8');
    const tokens = readFileSync(join(dataDir, 'tokens.csv'), 'utf8');

    const second = await runServe([], { ATREST_DATA_DIR: dataDir });
    const k2 = new Kubectl(second.info.kubeconfig);
    try {
      assert.equal(readFileSync(join(dataDir, 'ca.crt'), 'utf8'), ca, 'the CA is reused');
      assert.equal(readFileSync(join(dataDir, 'tokens.csv'), 'utf8'), tokens, 'the token is reused');
      assert.match(await k2.ok(['get', 'secret', 'persisted']), /persisted\s+Opaque\s+1/);
    } finally {
      await second.stop();
      k.cleanup();
      k2.cleanup();
    }
  });

  test('--token-auth-file: its first token goes into the kubeconfig; other tokens are refused', async () => {
    const dataDir = join(dir, 'tokens');
    const tokenFile = join(dir, 'tokens.csv');
    writeFileSync(tokenFile, '# static tokens\nsecret-token-1,alice,1001,"system:masters,dev"\n', { mode: 0o600 });
    const child = await runServe(['--data-dir', dataDir, '--token-auth-file', tokenFile]);
    const k = new Kubectl(child.info.kubeconfig);
    try {
      assert.match(readFileSync(child.info.kubeconfig, 'utf8'), /token: secret-token-1/);
      await k.ok(['get', 'ns', 'default']);
      const denied = await k.fails(['get', 'ns', '--token', 'not-a-token']);
      assert.match(denied, /Unauthorized/);
    } finally {
      await child.stop();
      k.cleanup();
    }
  });

  test('flag errors: automatic reload without a config; a missing config file', async () => {
    const noConfig = await runToExit(['--data-dir', join(dir, 'x'), '--encryption-provider-config-automatic-reload']);
    assert.equal(noConfig.code, 1);
    assert.match(noConfig.stderr, /--encryption-provider-config-automatic-reload must be set with --encryption-provider-config/);
    const missing = await runToExit(['--data-dir', join(dir, 'y'), '--experimental-encryption-provider-config', join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /error reading encryption provider configuration file ".*nope.yaml": open .*: no such file or directory/);
  });
});
