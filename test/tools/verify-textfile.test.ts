// `atrest verify --textfile`: the report as node_exporter textfile-collector metrics (issue #15).
// promtool parses the output here; test/ops/prometheus.test.ts scrapes it through node_exporter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { formatVerifyTextfile, type VerifyReport } from '../../src/tools/verify.js';

const report: VerifyReport = {
  revision: 7,
  ok: false,
  complete: false,
  notChecked: [{ cause: 'kms v2 provider "atrest" (plugin unix:///run/kms.sock): plugin unreachable: timeout', values: 3 }],
  resources: [
    { resource: 'configmaps', total: 1, writers: { identity: 1 }, plaintext: 1, stale: 1, undecryptable: [], needsRetiredKey: [], unchecked: 0 },
    {
      resource: 'secrets', total: 9, writers: { 'kms v2:atrest:sha256:ab': 2, 'aesgcm:k"1\\': 1 }, plaintext: 0, stale: 1,
      undecryptable: [{ key: '/registry/secrets/default/x', error: 'bad', resource: 'secrets', namespace: 'default', name: 'x' }],
      needsRetiredKey: ['r1', 'r2'].map((name) => ({ key: `/registry/secrets/default/${name}`, error: 'retired', keyIdHash: 'sha256:cd', resource: 'secrets', namespace: 'default', name })),
      unchecked: 3,
    },
  ],
};

test('formatVerifyTextfile: one gauge family per count, label values escaped, no keys or values', () => {
  const text = formatVerifyTextfile(report, 1_700_000_000_999);
  assert.match(text, /^atrest_verify_values\{resource="secrets",writer="kms v2:atrest:sha256:ab"\} 2$/m);
  assert.match(text, /^atrest_verify_values\{resource="secrets",writer="aesgcm:k\\"1\\\\"\} 1$/m);
  assert.match(text, /^atrest_verify_plaintext_values\{resource="configmaps"\} 1$/m);
  assert.match(text, /^atrest_verify_stale_values\{resource="secrets"\} 1$/m);
  assert.match(text, /^atrest_verify_undecryptable_values\{resource="secrets"\} 1$/m);
  assert.match(text, /^atrest_verify_ok 0$/m);
  assert.match(text, /^atrest_verify_last_run_timestamp_seconds 1700000000$/m);
  assert.doesNotMatch(text, /\/registry\//, 'no storage keys');
  // Issue #20: values whose KMS plugin could not be reached are their own family, not undecryptable.
  assert.match(text, /^atrest_verify_unchecked_values\{resource="secrets"\} 3$/m);
  assert.match(text, /^atrest_verify_unchecked_values\{resource="configmaps"\} 0$/m);
  assert.match(text, /^atrest_verify_check_complete 0$/m);
  // Values that need a retired KEK version: their own family, never undecryptable (its alert's runbook deletes objects).
  assert.match(text, /^atrest_verify_retired_key_values\{resource="secrets"\} 2$/m);
  assert.match(text, /^atrest_verify_retired_key_values\{resource="configmaps"\} 0$/m);
  assert.match(formatVerifyTextfile({ ...report, complete: true, notChecked: [], resources: [] }, 0), /^atrest_verify_check_complete 1$/m);
});

test('formatVerifyTextfile without a report (the store could not be read): only the incomplete signal and the time', () => {
  const text = formatVerifyTextfile(undefined, 1_700_000_000_000);
  assert.match(text, /^atrest_verify_check_complete 0$/m);
  assert.match(text, /^atrest_verify_ok 0$/m);
  assert.match(text, /^atrest_verify_last_run_timestamp_seconds 1700000000$/m);
  assert.doesNotMatch(text, /_values[{ ]/, 'no value counts were made');
});

test('promtool check metrics accepts the textfile', { skip: !existsSync('/usr/bin/promtool') && process.env['CI'] !== 'true' ? 'promtool is not installed (scripts/install-test-deps.sh)' : false }, () => {
  for (const input of [formatVerifyTextfile(report, Date.now()), formatVerifyTextfile(undefined, Date.now())]) {
    const run = spawnSync('/usr/bin/promtool', ['check', 'metrics'], { input, encoding: 'utf8' });
    assert.equal(run.error, undefined);
    // check metrics exits 0 when it parses; it may print lint hints (none expected for gauges with HELP).
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
  }
});
