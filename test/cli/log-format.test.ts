// Issue #15: human log lines on a terminal, JSON elsewhere, `--log-format json|text` to choose. The
// text runs are captured (ATREST_TEST_LOG_DIR) like every other atrest stderr, so the suite's
// secrets scan (scripts/scan-test-logs.ts) covers the text format too: the plugin below wraps a
// registered secret and fails to unwrap a tampered ciphertext while logging in text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { defaultLogFormat, formatTextLine, textDestination } from '../../src/log.js';
import { cliSource, makeTempDir, PluginProcess, repoRoot, runAtrest, TestKmsClient, waitFor } from '../helpers/plugin.js';
import { captureLog, registerKeyFile, registerTestSecret } from '../helpers/test-log.js';
import { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import pino from 'pino';

const TEXT_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO |WARN |ERROR|DEBUG) [a-z-]+: /;

test('formatTextLine: time, level, component, message, then key=value fields on one line', () => {
  const line = formatTextLine(JSON.stringify({
    level: 40, time: '2026-12-02T02:50:01.123Z', component: 'kms-plugin', event: 'call-failed',
    grpcCode: 'InvalidArgument', err: 'bad "ciphertext"\nsecond line', n: 3, ok: true, obj: { a: 1 }, msg: 'KMS call\nfailed',
  }));
  assert.equal(line,
    '2026-12-02T02:50:01.123Z WARN  kms-plugin: KMS call\\nfailed event=call-failed grpcCode=InvalidArgument ' +
    'err="bad \\"ciphertext\\"\\nsecond line" n=3 ok=true obj={"a":1}');
  assert.equal(formatTextLine('not json\u0007'), 'not json\\u0007');
});

test('defaultLogFormat: ATREST_LOG_FORMAT wins, else text on a TTY and JSON off one', () => {
  assert.equal(defaultLogFormat({}, true), 'text');
  assert.equal(defaultLogFormat({}, false), 'json');
  assert.equal(defaultLogFormat({ ATREST_LOG_FORMAT: 'json' }, true), 'json');
  assert.equal(defaultLogFormat({ ATREST_LOG_FORMAT: 'text' }, false), 'text');
  assert.equal(defaultLogFormat({ ATREST_LOG_FORMAT: 'yaml' }, false), 'json');
});

test('the text format is rendered from the JSON line pino wrote: what pino redacts stays redacted', () => {
  const lines: string[] = [];
  const log = pino({ base: { component: 't' }, redact: ['password'], timestamp: pino.stdTimeFunctions.isoTime }, textDestination((l) => lines.push(l)));
  log.info({ password: 'hunter2-plaintext', user: 'alice' }, 'login');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, TEXT_LINE);
  assert.match(lines[0]!, / login password=\[Redacted\] user=alice\n$/);
  assert.doesNotMatch(lines[0]!, /hunter2/);
});

test('--log-format text|json chooses the format; JSON stays the default off a TTY', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-logfmt-');
  try {
    const keyFile = join(dir, 'kek.json');
    const init = await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile, '--log-format', 'text']);
    assert.equal(init.code, 0, init.stderr);
    assert.match(init.stderr, TEXT_LINE);
    assert.match(init.stderr, /local KEK version 1 created event=key-created /);
    assert.doesNotMatch(init.stderr, /^\{/m);

    const rotated = await runAtrest(['kms-plugin', 'rotate-key', '--key-file', keyFile]);
    assert.equal(rotated.code, 0, rotated.stderr);
    const json = JSON.parse(rotated.stderr.trim().split('\n')[0]!) as Record<string, unknown>;
    assert.equal(json['event'], 'key-rotated');

    // The global flag may stand before the command, and the env var sets it too.
    const before = await runAtrest(['--log-format', 'text', 'kms-plugin', 'rotate-key', '--key-file', keyFile]);
    assert.match(before.stderr, /local KEK version added.* event=key-rotated /);
    const env = await runAtrest(['kms-plugin', 'rotate-key', '--key-file', keyFile], { ATREST_LOG_FORMAT: 'text' });
    assert.match(env.stderr, TEXT_LINE);

    const bad = await runAtrest(['kms-plugin', 'rotate-key', '--key-file', keyFile, '--log-format', 'yaml']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--log-format <format>' argument 'yaml' is invalid\. Allowed choices are json, text/);
  } finally {
    await cleanup();
  }
});

test('a plugin logging in text never prints the DEK it wraps or the tampered ciphertext it rejects', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-logfmt-');
  const keyFile = join(dir, 'kek.json');
  assert.equal((await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile])).code, 0);
  const socket = join(dir, 'kms.sock');
  const plugin = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile, '--log-format', 'text'], { ATREST_LOG_LEVEL: 'debug' });
  const client = TestKmsClient.forPath(socket);
  try {
    await waitFor('the plugin to serve', () => plugin.stderrLines.some((l) => l.includes('event=start')) || plugin.exitCode !== null, 20_000);
    const dek = randomBytes(32);
    registerTestSecret(dek, 'text-format-dek');
    const wrapped = await client.encrypt(dek);
    const tampered = Buffer.from(wrapped.ciphertext);
    tampered[tampered.length - 1]! ^= 1;
    await assert.rejects(client.decrypt(tampered, wrapped.keyId));
    await assert.rejects(client.decrypt(Buffer.from('not a ciphertext'), wrapped.keyId));
    await waitFor('the failed calls to be logged', () => plugin.stderrLines.filter((l) => l.includes('event=call-failed')).length >= 2);
    const text = plugin.stderrLines.join('\n');
    assert.match(text, /kms plugin serving event=start /);
    assert.match(text, /WARN {2}kms-plugin: KMS call failed event=call-failed apiVersion=v2 method=Decrypt grpcCode=InvalidArgument /);
    assert.equal(plugin.logs.length, 0, 'no JSON lines in text mode');
    for (const form of [dek.toString('base64'), dek.toString('hex'), tampered.toString('base64'), tampered.toString('hex')]) {
      assert.ok(!text.includes(form), 'no DEK or ciphertext in the text log');
    }
    // Stopping flushes the last text lines too (the plugin exits right after logging them).
    client.close();
    assert.equal(await plugin.stop(), 0);
    await waitFor('the stop line', () => plugin.stderrLines.some((l) => /INFO {2}kms-plugin: kms plugin stopped event=stop signal=SIGTERM$/.test(l)));
  } finally {
    client.close();
    await plugin.stop();
    await cleanup();
  }
});

test('on a terminal (a real pty from script(1)) the default is text', { skip: !existsSync('/usr/bin/script') && process.env['CI'] !== 'true' ? 'script(1) is not installed' : false }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-logfmt-');
  try {
    const keyFile = join(dir, 'kek.json');
    const cmd = `exec ${process.execPath} --import tsx ${cliSource} kms-plugin init-key --key-file ${keyFile}`;
    const env: NodeJS.ProcessEnv = { ...process.env, SHELL: '/bin/sh' };
    delete env['ATREST_LOG_FORMAT'];
    const run = spawnSync('/usr/bin/script', ['-qec', cmd, '/dev/null'], { cwd: repoRoot, encoding: 'utf8', env });
    registerKeyFile(keyFile);
    captureLog('log-format-tty', Readable.from([run.stdout ?? '']));
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
    const lines = run.stdout.split(/\r?\n/);
    assert.ok(lines.some((l) => TEXT_LINE.test(l) && l.includes('event=key-created')), run.stdout);
    assert.ok(!lines.some((l) => l.startsWith('{')), run.stdout);
  } finally {
    await cleanup();
  }
});

const noScript = !existsSync('/usr/bin/script') && process.env['CI'] !== 'true' ? 'script(1) is not installed' : false;

test('atrest dev on a terminal (script(1) pty) logs human text lines, no JSON; Ctrl-C stops it', { skip: noScript || (!kubectlAvailable() && 'kubectl is not installed'), timeout: 90_000 }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-logfmt-dev-');
  const dataDir = join(dir, 'data');
  // `exec`: script(1) runs the command with $SHELL -c (/bin/sh when SHELL is unset, as under CI).
  // dash does not exec a lone command, so without it the shell would sit in the pty's foreground
  // process group, die of the Ctrl-C itself (exit 130) and never report atrest's own exit.
  const cmd = `exec ${process.execPath} --import tsx ${cliSource} dev --data-dir ${dataDir} --secure-port 0`;
  // SHELL pinned so a developer's bash runs the test as CI's /bin/sh does.
  const env: NodeJS.ProcessEnv = { ...process.env, ATREST_LOG_LEVEL: 'debug', SHELL: '/bin/sh' };
  delete env['ATREST_LOG_FORMAT'];
  // stdout and stderr of `atrest dev` both go to the pty, so script's stdout carries the logs:
  // captured for the secrets scan like every other atrest log.
  const child = spawn('/usr/bin/script', ['-qec', cmd, '/dev/null'], { cwd: repoRoot, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  captureLog('dev-tty', child.stdout);
  child.stderr.resume();
  const lines: string[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(l.replace(/\r$/, '')));
  let kubectl: Kubectl | undefined;
  try {
    const kubeconfig = await waitFor('atrest dev to print its kubeconfig', () => {
      if (child.exitCode !== null) throw new Error(`atrest dev exited ${child.exitCode}:\n${lines.join('\n')}`);
      return lines.map((l) => /^kubeconfig: (.+)$/.exec(l)?.[1]).find((k) => k !== undefined);
    }, 60_000);
    registerKeyFile(join(dataDir, 'kek.json'));
    const value = `dev-tty-${randomBytes(12).toString('hex')}`;
    registerTestSecret(value, 'dev-tty-secret');
    kubectl = new Kubectl(kubeconfig);
    await kubectl.ok(['create', 'secret', 'generic', 'tty-secret', `--from-literal=k=${value}`]);
    assert.equal(Buffer.from(await kubectl.ok(['get', 'secret', 'tty-secret', '-o', 'jsonpath={.data.k}']), 'base64').toString(), value);

    // Ctrl-C typed at the terminal: the pty turns it into SIGINT for atrest dev.
    child.stdin.write('\x03');
    assert.equal(await exited, 0, lines.join('\n'));
    const out = lines.join('\n');
    assert.ok(lines.some((l) => TEXT_LINE.test(l) && / dev: local KEK version 1 created event=key-created /.test(l)), out);
    assert.ok(lines.some((l) => /INFO {2}dev: stopping the API server and the KMS plugin event=stop signal=SIGINT$/.test(l)), out);
    assert.ok(lines.some((l) => TEXT_LINE.test(l) && / apiserver: /.test(l)), `the API server logs text too:\n${out}`);
    assert.ok(!lines.some((l) => l.trimStart().startsWith('{')), `no JSON line:\n${out}`);
    assert.ok(!out.includes(value) && !out.includes(Buffer.from(value).toString('base64')), 'the secret value is not logged');
  } finally {
    kubectl?.cleanup();
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
    await cleanup();
  }
});
