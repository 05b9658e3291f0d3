// Issue #8 §6: the log scanner (scripts/scan-test-logs.ts, run by scripts/test-all.sh after the
// whole suite) finds a registered secret in any of its forms (base64, hex, text) and reports
// file:line without printing it; a clean log passes. Plus the capture itself: an atrest child run
// through the test helpers writes its stderr into ATREST_TEST_LOG_DIR, and a key file it is given
// is registered, so the real scan covers them; in-process servers' loggers and the fake KMS's DEKs too.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FakeKmsV1 } from '../helpers/fake-kms.js';
import { repoRoot, runAtrest } from '../helpers/plugin.js';
import { flushTestSecrets, inProcessLogger } from '../helpers/test-log.js';

const scan = (dir: string): { code: number | null; out: string } => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'scripts/scan-test-logs.ts'), dir], { encoding: 'utf8', env: { ...process.env, ATREST_TEST_LOG_DIR: '' } });
  return { code: r.status, out: r.stdout + r.stderr };
};

test('the scanner finds a registered secret in base64 (at any alignment), hex, text or byte-array form, reports file:line, never prints it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-scan-'));
  try {
    const key = randomBytes(32);
    const value = `s3cr3t-${randomBytes(6).toString('hex')}`;
    writeFileSync(join(dir, 'secrets.txt'), `kek ${key.toString('base64')}\nvalue ${Buffer.from(value).toString('base64')}\n`);
    writeFileSync(join(dir, 'clean.log'), '{"level":30,"msg":"started","key_id":"0f3521c9b9b8bbf3"}\n');
    const clean = scan(dir);
    assert.equal(clean.code, 0, clean.out);
    let found = 0;
    const planted = [
      `{"msg":"x","k":"${key.toString('base64')}"}`,
      `dek=${key.toString('hex')}`,
      `atrest: bad value ${value}`,
      // A Buffer as pino prints it, and the key inside longer base64-encoded data at each alignment.
      `{"msg":"x","dek":{"type":"Buffer","data":[${Array.from(key).join(',')}]}}`,
      ...[1, 2].map((n) => `{"blob":"${Buffer.concat([randomBytes(n), key, randomBytes(5)]).toString('base64')}"}`),
    ];
    for (const [i, line] of planted.entries()) {
      writeFileSync(join(dir, `leak${i}.log`), `first line\n${line}\n`);
      const r = scan(dir);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, new RegExp(`leak${i}\\.log:2: (kek|value)`));
      assert.ok(!r.out.includes(key.toString('base64')) && !r.out.includes(key.toString('hex')) && !r.out.includes(value), 'the report prints no secret');
      rmSync(join(dir, `leak${i}.log`));
      found++;
    }
    console.log(`RELIABILITY ${JSON.stringify({ section: 'secrets-scanner-selftest', planted: planted.length, found })}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('helpers capture atrest stderr into ATREST_TEST_LOG_DIR and register the key files they pass', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-capture-'));
  const before = process.env['ATREST_TEST_LOG_DIR'];
  process.env['ATREST_TEST_LOG_DIR'] = dir;
  try {
    const keyFile = join(dir, 'kek.json');
    const init = await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
    assert.equal(init.code, 0, init.stderr);
    const bad = await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]); // refuses: the file exists
    assert.notEqual(bad.code, 0);
    const logs = readdirSync(dir).filter((f) => f.endsWith('.log'));
    assert.ok(logs.length >= 1, `captured: ${logs.join(', ')}`);
    assert.ok(logs.some((f) => readFileSync(join(dir, f), 'utf8').trim() !== ''));
    const kek = (JSON.parse(readFileSync(keyFile, 'utf8')) as { versions: Array<{ key: string }> }).versions[0]!.key;
    assert.match(readFileSync(join(dir, 'secrets.txt'), 'utf8'), new RegExp(`^local-kek ${kek.replace(/[+/]/g, '\\$&')}$`, 'm'));
    const r = scan(dir);
    assert.equal(r.code, 0, r.out);
  } finally {
    if (before === undefined) delete process.env['ATREST_TEST_LOG_DIR']; else process.env['ATREST_TEST_LOG_DIR'] = before;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('in-process servers log JSON into ATREST_TEST_LOG_DIR and the fake KMS\'s buffered DEKs are registered, so the scan covers both', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-in-process-'));
  const before = process.env['ATREST_TEST_LOG_DIR'];
  process.env['ATREST_TEST_LOG_DIR'] = dir;
  try {
    const kms = new FakeKmsV1();
    const deks = [randomBytes(32), randomBytes(32)];
    for (const dek of deks) await kms.encrypt(dek);
    const log = inProcessLogger('in-process-selftest');
    assert.equal(inProcessLogger('in-process-selftest'), log, 'one logger (one file) per component');
    log.info({ event: 'clean' }, 'nothing secret here');
    flushTestSecrets();
    const registered = readFileSync(join(dir, 'secrets.txt'), 'utf8');
    for (const dek of deks) assert.ok(registered.includes(`dek ${dek.toString('base64')}\n`), 'every DEK the fake KMS saw is registered');
    assert.equal(scan(dir).code, 0, 'a clean in-process log passes');
    // A DEK in an in-process log line is found there.
    log.warn({ leaked: deks[1]!.toString('hex') }, 'oops');
    const r = scan(dir);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /in-process-selftest-\d+-\d+\.log:2: dek \(hex\)/);
    assert.ok(!r.out.includes(deks[1]!.toString('hex')), 'the scanner never prints the secret');
  } finally {
    if (before === undefined) delete process.env['ATREST_TEST_LOG_DIR']; else process.env['ATREST_TEST_LOG_DIR'] = before;
    rmSync(dir, { recursive: true, force: true });
  }
});
