// `atrest dev` (npm start) end to end: the real kubectl creates a secret, the raw stored value is
// kms v2 ciphertext, Ctrl-C stops cleanly, and a second start reuses the data. Under a directory too
// long for a UNIX socket path, the plugin socket goes to a private directory (issue #20 §3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import { cliSource, makeTempDir, repoRoot, runAtrest } from '../helpers/plugin.js';
import { captureLog, registerKeyFile } from '../helpers/test-log.js';
import { chooseDevSocket } from '../../src/cli/dev-socket.js';

interface DevProcess {
  kubeconfig: string;
  stop(): Promise<number | null>;
}

async function startDev(dataDir: string, env: NodeJS.ProcessEnv = {}, lines: string[] = []): Promise<DevProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', cliSource, 'dev', '--data-dir', dataDir, '--secure-port', '0'], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  captureLog('dev', child.stderr);
  child.stderr.resume();
  const kubeconfig = await new Promise<string>((resolve, reject) => {
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

test('atrest dev under a directory too long for a socket path serves its plugin from a private runtime directory', { skip: !kubectlAvailable() && 'kubectl is not installed' }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-dev-long-');
  const dataDir = join(dir, 'd'.repeat(120));
  const runtime = join(dir, 'run');
  mkdirSync(runtime, { mode: 0o700 });
  const lines: string[] = [];
  const dev = await startDev(dataDir, { XDG_RUNTIME_DIR: runtime }, lines);
  const kubectl = new Kubectl(dev.kubeconfig);
  try {
    const line = lines.find((l) => l.startsWith('kms plugin socket: '));
    assert.ok(line, lines.join('\n'));
    const m = /^kms plugin socket: (\S+) \(.* is \d+ bytes, longer than a UNIX socket path may be \(107\); --kms-socket to choose\)$/.exec(line);
    assert.ok(m, line);
    const socket = m[1]!;
    assert.ok(socket.startsWith(`${runtime}/atrest-`), socket);
    assert.equal(statSync(join(socket, '..')).mode & 0o777, 0o700);
    assert.ok(statSync(socket).isSocket());
    assert.ok(readFileSync(join(dataDir, 'encryption-config.yaml'), 'utf8').includes(`endpoint: unix://${socket}\n`));
    // The plugin serves: a secret is written with kms v2.
    await kubectl.ok(['create', 'secret', 'generic', 's', '--from-literal=k=value-long-1']);
    const raw = await runAtrest(['get-raw', '/registry/secrets/default/s', '--data-dir', dataDir]);
    assert.ok(raw.stdout.startsWith('k8s:enc:kms:v2:atrest-dev:'), raw.stderr);
  } finally {
    assert.equal(await dev.stop(), 0);
    kubectl.cleanup();
  }
  try {
    // --kms-socket that is itself too long: a usage error naming the limit.
    const tooLong = await runAtrest(['dev', '--data-dir', dataDir, '--kms-socket', join(dataDir, 'kms.sock')]);
    assert.equal(tooLong.code, 2, tooLong.stderr);
    assert.match(tooLong.stderr, /--kms-socket .*kms\.sock: \d+ bytes, longer than a UNIX socket path may be \(107\)/);
  } finally {
    await cleanup();
  }
});

test('chooseDevSocket: the data dir when it fits; a private fallback; never a directory others can enter or a symlink', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-dev-socket-');
  try {
    assert.deepEqual(chooseDevSocket(join(dir, 'short')), { path: join(dir, 'short', 'kms.sock') });
    const long = join(dir, 'x'.repeat(120));
    const runtime = join(dir, 'run');
    mkdirSync(runtime, { mode: 0o700 });
    const chosen = chooseDevSocket(long, { env: { XDG_RUNTIME_DIR: runtime } });
    assert.match(chosen.path, new RegExp(`^${runtime}/atrest-[0-9a-f]{12}/kms\\.sock$`));
    assert.equal(chooseDevSocket(long, { env: { XDG_RUNTIME_DIR: runtime } }).path, chosen.path, 'the same place every start');
    const other = chooseDevSocket(join(dir, 'y'.repeat(120)), { env: { XDG_RUNTIME_DIR: runtime } });
    assert.notEqual(other.path, chosen.path, 'one per data dir');
    // A directory of that name that others may enter, or a symlink in its place, is refused.
    const loose = join(dir, 'loose');
    mkdirSync(loose, { mode: 0o700 });
    const looseChoice = chooseDevSocket(long, { env: { XDG_RUNTIME_DIR: loose } });
    chmodSync(join(looseChoice.path, '..'), 0o755);
    assert.throws(() => chooseDevSocket(long, { env: { XDG_RUNTIME_DIR: loose } }), /is not a private directory of this user/);
    const linked = join(dir, 'linked');
    mkdirSync(linked, { mode: 0o700 });
    const target = join(linked, '..', 'run');
    const name = chooseDevSocket(long, { env: { XDG_RUNTIME_DIR: linked } }).path;
    rmSync(join(name, '..'), { recursive: true });
    symlinkSync(target, join(name, '..'));
    assert.throws(() => chooseDevSocket(long, { env: { XDG_RUNTIME_DIR: linked } }), /is not a private directory of this user/);
    assert.equal(existsSync(join(dir, 'short')), false, 'nothing is made for the default place');
  } finally {
    await cleanup();
  }
});
