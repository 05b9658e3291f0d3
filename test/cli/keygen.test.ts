import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../helpers/cli.js';

test('keygen prints 32 random bytes as base64 by default', async () => {
  const a = await runCli(['keygen']);
  const b = await runCli(['keygen']);
  assert.equal(a.code, 0);
  assert.equal(Buffer.from(a.stdout.trim(), 'base64').length, 32);
  assert.notEqual(a.stdout, b.stdout);
});

test('keygen --bytes 16 and a bad size', async () => {
  const ok = await runCli(['keygen', '--bytes', '16']);
  assert.equal(Buffer.from(ok.stdout.trim(), 'base64').length, 16);
  const bad = await runCli(['keygen', '--bytes', '20']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /must be 16, 24 or 32/);
});
