// Issue #15: the alert rules in deploy/prometheus pass `promtool check rules`, and their unit tests
// (`promtool test rules`, deploy/prometheus/atrest-rules.test.yaml) pass, cover every alert with a
// case where it fires, and fail when a rule is broken.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { repoRoot } from '../helpers/plugin.js';

const PROMTOOL = '/usr/bin/promtool';
const skip = !existsSync(PROMTOOL) && process.env['CI'] !== 'true' ? 'promtool is not installed (scripts/install-test-deps.sh)' : false;
const dir = join(repoRoot, 'deploy/prometheus');
const rulesFile = join(dir, 'atrest-rules.yaml');
const testsFile = join(dir, 'atrest-rules.test.yaml');

function promtool(...args: string[]): { status: number | null; output: string } {
  const run = spawnSync(PROMTOOL, args, { encoding: 'utf8', timeout: 120_000 });
  assert.equal(run.error, undefined, `promtool: ${String(run.error)}`);
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

interface RulesDoc { groups: Array<{ rules: Array<{ alert?: string; record?: string }> }> }
interface TestsDoc { tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }> }

test('promtool check rules accepts deploy/prometheus/atrest-rules.yaml', { skip }, () => {
  const run = promtool('check', 'rules', rulesFile);
  assert.equal(run.status, 0, run.output);
  assert.match(run.output, /SUCCESS: \d+ rules found/);
});

test('promtool test rules: every alert has a case that fires it and one that does not', { skip }, () => {
  const run = promtool('test', 'rules', testsFile);
  assert.equal(run.status, 0, run.output);
  const alerts = (parse(readFileSync(rulesFile, 'utf8')) as RulesDoc).groups.flatMap((g) => g.rules.map((r) => r.alert)).filter((a): a is string => a !== undefined);
  for (const required of ['AtrestKmsPluginDown', 'AtrestKmsPluginUnhealthy', 'AtrestKmsErrorRatioHigh', 'AtrestKmsLatencyHigh',
    'AtrestKekTooOld', 'AtrestDekSeedTooOld', 'AtrestUndecryptableValues', 'AtrestStaleValuesAfterRotation', 'AtrestVerifyIncomplete', 'AtrestRetiredKeyValues']) {
    assert.ok(alerts.includes(required), `rule ${required}`);
  }
  const cases = (parse(readFileSync(testsFile, 'utf8')) as TestsDoc).tests.flatMap((t) => t.alert_rule_test ?? []);
  for (const alert of alerts) {
    assert.ok(cases.some((c) => c.alertname === alert && (c.exp_alerts?.length ?? 0) > 0), `a case where ${alert} fires`);
    assert.ok(cases.some((c) => c.alertname === alert && (c.exp_alerts?.length ?? 0) === 0), `a case where ${alert} does not fire`);
  }
});

test('the rule unit tests catch a broken rule (threshold changed)', { skip }, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'atrest-rules-'));
  try {
    copyFileSync(testsFile, join(tmp, 'atrest-rules.test.yaml'));
    const rules = readFileSync(rulesFile, 'utf8');
    assert.ok(rules.includes('> 0.05'));
    writeFileSync(join(tmp, 'atrest-rules.yaml'), rules.replace('> 0.05', '> 0.5'));
    const run = promtool('test', 'rules', join(tmp, 'atrest-rules.test.yaml'));
    assert.equal(run.status, 1, run.output);
    assert.match(run.output, /alertname: AtrestKmsErrorRatioHigh/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('promtool check config accepts deploy/prometheus/scrape-config.yaml (with its files present)', { skip }, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'atrest-scrape-'));
  try {
    const ca = join(tmp, 'ca.crt');
    const token = join(tmp, 'token');
    writeFileSync(ca, '');
    writeFileSync(token, 'x');
    const text = readFileSync(join(dir, 'scrape-config.yaml'), 'utf8');
    assert.ok(text.includes('/etc/atrest/ca.crt') && text.includes('/etc/prometheus/atrest-token'));
    const file = join(tmp, 'prometheus.yml');
    writeFileSync(file, `rule_files: ["${rulesFile}"]\n` + text.replace('/etc/atrest/ca.crt', ca).replace('/etc/prometheus/atrest-token', token));
    const run = promtool('check', 'config', file);
    assert.equal(run.status, 0, run.output);
    const jobs = [...text.matchAll(/job_name: (\S+)/g)].map((m) => m[1]);
    assert.deepEqual(jobs, ['atrest-kms-plugin', 'atrest-apiserver', 'atrest-verify']);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
