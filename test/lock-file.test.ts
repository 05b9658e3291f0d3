// src/lock-file.ts: the O_EXCL lock file of the API server's data dir and the local backend's key file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withLockFile } from '../src/lock-file.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-lock-file-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const timeout = (waitedS: number): Error => new Error(`waited ${waitedS} s`);

test('the lock file holds the pid while fn runs and is gone afterwards, also when fn throws', () => withDir(async (dir) => {
  const lock = join(dir, 'x.lock');
  const result = await withLockFile(lock, async () => readFileSync(lock, 'utf8'), timeout);
  assert.equal(result, `${process.pid}\n`);
  await assert.rejects(withLockFile(lock, async () => { throw new Error('boom'); }, timeout), /boom/);
  assert.deepEqual(readdirSync(dir), []);
}));

test('holders take turns', () => withDir(async (dir) => {
  const lock = join(dir, 'x.lock');
  let inside = 0;
  let most = 0;
  await Promise.all(Array.from({ length: 5 }, () => withLockFile(lock, async () => {
    most = Math.max(most, ++inside);
    await new Promise((r) => setTimeout(r, 20));
    inside--;
  }, timeout)));
  assert.equal(most, 1);
  assert.equal(existsSync(lock), false);
}));

test('a stale lock is broken; a fresh one is waited for until waitMs, then timeoutError', () => withDir(async (dir) => {
  const lock = join(dir, 'x.lock');
  writeFileSync(lock, '999999\n');
  const old = new Date(Date.now() - 60_000);
  utimesSync(lock, old, old);
  assert.equal(await withLockFile(lock, async () => 'ran', timeout, { staleMs: 10_000 }), 'ran');
  assert.equal(existsSync(lock), false);

  writeFileSync(lock, '999999\n');
  const started = Date.now();
  await assert.rejects(withLockFile(lock, async () => 'ran', timeout, { staleMs: 10_000, waitMs: 200 }), /waited 0\.2 s/);
  assert.ok(Date.now() - started >= 200);
  assert.equal(readFileSync(lock, 'utf8'), '999999\n', 'another holder\'s fresh lock is left alone');
}));

test('a lock file that cannot be created fails through createError, leaving nothing behind', () => withDir(async (dir) => {
  const lock = join(dir, 'missing', 'x.lock');
  await assert.rejects(
    withLockFile(lock, async () => 'ran', timeout, { createError: (err) => new Error(`no lock: ${(err as NodeJS.ErrnoException).code}`) }),
    /^Error: no lock: ENOENT$/,
  );
  assert.deepEqual(readdirSync(dir), []);
}));
