// --feature-gates: kube's syntax (comma list of Name=bool, repeated flags merge, AllAlpha/AllBeta),
// only implemented gates accepted; `atrest serve` refuses an unknown gate naming it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { defaultFeatureGates, FeatureGateError, parseFeatureGates } from '../../src/api/feature-gates.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('parseFeatureGates', () => {
  test('defaults, true/false in Go ParseBool spellings, spaces and empty items, later wins, merging', () => {
    assert.deepEqual(defaultFeatureGates(), { AllowUnsafeMalformedObjectDeletion: false });
    assert.equal(parseFeatureGates('AllowUnsafeMalformedObjectDeletion=true').AllowUnsafeMalformedObjectDeletion, true);
    for (const v of ['1', 't', 'T', 'TRUE', 'True']) assert.equal(parseFeatureGates(` AllowUnsafeMalformedObjectDeletion = ${v} ,`).AllowUnsafeMalformedObjectDeletion, true, v);
    assert.equal(parseFeatureGates('AllowUnsafeMalformedObjectDeletion=true,AllowUnsafeMalformedObjectDeletion=0').AllowUnsafeMalformedObjectDeletion, false);
    const first = parseFeatureGates('AllowUnsafeMalformedObjectDeletion=true');
    assert.equal(parseFeatureGates('', first).AllowUnsafeMalformedObjectDeletion, true, 'a second flag keeps the first one\'s gates');
    assert.equal(parseFeatureGates('AllAlpha=true').AllowUnsafeMalformedObjectDeletion, true);
    assert.equal(parseFeatureGates('AllowUnsafeMalformedObjectDeletion=false,AllAlpha=true').AllowUnsafeMalformedObjectDeletion, false, 'an explicit gate wins over AllAlpha');
    assert.equal(parseFeatureGates('AllBeta=true').AllowUnsafeMalformedObjectDeletion, false);
  });

  test('errors name the gate or the value, as kube words them', () => {
    assert.throws(() => parseFeatureGates('SomethingElse=true'), (e: unknown) => e instanceof FeatureGateError && e.code === 'FEATURE_GATE_INVALID' && /^unrecognized feature gate: SomethingElse/.test(e.message));
    assert.throws(() => parseFeatureGates('AllowUnsafeMalformedObjectDeletion'), /missing bool value for AllowUnsafeMalformedObjectDeletion/);
    assert.throws(() => parseFeatureGates('AllowUnsafeMalformedObjectDeletion=yes'), /invalid value of AllowUnsafeMalformedObjectDeletion=yes, err: strconv.ParseBool: parsing "yes": invalid syntax/);
  });
});

function serve(args: string[]): Promise<{ code: number | null; stderr: string; started: boolean }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/run.ts', 'serve', '--secure-port', '0', ...args], {
      cwd: ROOT, env: { ...process.env, ATREST_LOG_LEVEL: 'info' }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    let started = false;
    proc.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    createInterface({ input: proc.stdout }).once('line', () => {
      started = true;
      proc.kill('SIGTERM');
    });
    proc.once('exit', (code) => resolve({ code, stderr, started }));
  });
}

test('atrest serve --feature-gates: an unknown gate is a usage error naming it; the known one starts with a warning', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-gates-'));
  try {
    const bad = await serve(['--data-dir', dir, '--feature-gates', 'AllowUnsafeMalformedObjectDeletion=true,NoSuchGate=true']);
    assert.equal(bad.started, false);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--feature-gates.*unrecognized feature gate: NoSuchGate/);
    const good = await serve(['--data-dir', dir, '--feature-gates=AllowUnsafeMalformedObjectDeletion=true']);
    assert.equal(good.started, true, good.stderr);
    assert.match(good.stderr, /feature gate AllowUnsafeMalformedObjectDeletion is on/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
