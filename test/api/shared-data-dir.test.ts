// Several `atrest serve` replicas on one --data-dir (issue #14): the generated CA, serving
// certificate and admin token are created once even when every replica starts at the same moment,
// and what a replica reads is one consistent set.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensureGeneratedTokenFile } from '../../src/api/auth.js';
import { ensureGeneratedPki, PKI_FILES, PKI_LOCK_FILE } from '../../src/api/pki.js';
import { hasCode } from '../../src/errors.js';
import { repoRoot } from '../helpers/plugin.js';

const withDir = async (fn: (dir: string) => Promise<void>): Promise<void> => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-shared-dir-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

test('concurrent first starts in one process generate one PKI and one token', () => withDir(async (dir) => {
  const pkis = await Promise.all(Array.from({ length: 5 }, () => ensureGeneratedPki(dir)));
  const tokens = await Promise.all(Array.from({ length: 5 }, () => ensureGeneratedTokenFile(join(dir, 'tokens.csv'))));
  for (const p of pkis) {
    assert.equal(p.caPem, pkis[0]?.caPem);
    assert.equal(p.certPem, pkis[0]?.certPem);
    assert.equal(p.keyPem, pkis[0]?.keyPem);
  }
  for (const t of tokens) assert.equal(t[0]?.token, tokens[0]?.[0]?.token);
  // No lock or temporary file is left behind.
  assert.deepEqual(readdirSync(dir).sort(), [...Object.values(PKI_FILES), 'tokens.csv'].sort());
}));

test('without hard links (EPERM, EXDEV, ENOTSUP) concurrent first starts still get one token, written whole under a lock', () => withDir(async (dir) => {
  const path = join(dir, 'tokens.csv');
  let refused = 0;
  const noLinks = (code: string) => async (): Promise<void> => {
    refused++;
    throw Object.assign(new Error(`link: ${code}`), { code });
  };
  const tokens = await Promise.all(['EPERM', 'EXDEV', 'ENOTSUP', 'EPERM', 'EXDEV'].map((code) => ensureGeneratedTokenFile(path, { link: noLinks(code) })));
  assert.equal(refused, 5, 'every start took the fallback');
  for (const t of tokens) assert.equal(t[0]?.token, tokens[0]?.[0]?.token);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir), ['tokens.csv'], 'no lock or temporary file is left behind');
  // Reused on the next start; another link error is not taken for a missing feature.
  assert.equal((await ensureGeneratedTokenFile(path, { link: noLinks('EPERM') }))[0]?.token, tokens[0]?.[0]?.token);
  rmSync(path);
  await assert.rejects(ensureGeneratedTokenFile(path, { link: noLinks('EACCES') }), /EACCES/);
  assert.deepEqual(readdirSync(dir), []);
}));

/** A child process that calls ensureGeneratedPki + ensureGeneratedTokenFile on `dir` and prints what it got. */
function generateInChild(dir: string): Promise<{ ca: string; cert: string; key: string; token: string }> {
  const script = `
    const { ensureGeneratedPki } = await import(${JSON.stringify(join(repoRoot, 'src/api/pki.ts'))});
    const { ensureGeneratedTokenFile } = await import(${JSON.stringify(join(repoRoot, 'src/api/auth.ts'))});
    const p = await ensureGeneratedPki(${JSON.stringify(dir)});
    const t = await ensureGeneratedTokenFile(${JSON.stringify(join(dir, 'tokens.csv'))});
    process.stdout.write(JSON.stringify({ ca: p.caPem, cert: p.certPem, key: p.keyPem, token: t[0].token }));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as { ca: string; cert: string; key: string; token: string }) : reject(new Error(`child exited ${code}: ${err}`))));
  });
}

test('three processes starting at once on one data dir end with the same CA, serving certificate and token', { timeout: 120_000 }, () => withDir(async (dir) => {
  const got = await Promise.all([generateInChild(dir), generateInChild(dir), generateInChild(dir)]);
  const first = got[0]!;
  for (const g of got) {
    assert.equal(g.ca, first.ca);
    assert.equal(g.cert, first.cert);
    assert.equal(g.key, first.key);
    assert.equal(g.token, first.token);
  }
  assert.equal(readFileSync(join(dir, PKI_FILES.caCert), 'utf8'), first.ca);
  assert.deepEqual(readdirSync(dir).sort(), [...Object.values(PKI_FILES), 'tokens.csv'].sort());
}));

test('a lock left by a crashed generator is taken over once it is old; a fresh one is waited for', () => withDir(async (dir) => {
  const lock = join(dir, PKI_LOCK_FILE);
  writeFileSync(lock, '999999\n');
  const old = new Date(Date.now() - 120_000);
  utimesSync(lock, old, old);
  const pki = await ensureGeneratedPki(dir);
  assert.match(pki.certPem, /BEGIN CERTIFICATE/);
  assert.deepEqual(readdirSync(dir).sort(), Object.values(PKI_FILES).sort());
}));

test('a serving key that does not belong to the certificate is refused, naming the files', () => withDir(async (dir) => {
  await ensureGeneratedPki(dir);
  const other = mkdtempSync(join(tmpdir(), 'atrest-shared-dir-other-'));
  try {
    await ensureGeneratedPki(other);
    writeFileSync(join(dir, PKI_FILES.key), readFileSync(join(other, PKI_FILES.key)));
  } finally {
    rmSync(other, { recursive: true, force: true });
  }
  await assert.rejects(ensureGeneratedPki(dir), (err: Error) => {
    assert.ok(hasCode(err, 'API_PKI_INVALID'));
    assert.ok(err.message.includes(join(dir, PKI_FILES.key)) && err.message.includes(PKI_FILES.cert), err.message);
    return true;
  });
}));
