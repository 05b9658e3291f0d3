// Issue #20 §4: piping a command into `head` ends quietly, as Unix tools do. Node ignores SIGPIPE
// and reports EPIPE; atrest then exits at once with 141 (128 + SIGPIPE, the status a shell shows for
// kubectl or etcdctl killed by the signal) and prints nothing: no stack trace, no `atrest:` line.
// Real bash pipelines with the real `head`; each output is larger than a pipe's buffer, so the
// write after `head` is gone is certain.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import { cliPath } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/plugin.js';

const KEY = Buffer.alloc(32, 9).toString('base64');

test('atrest … | head: exit 141, nothing on stderr, for get-raw, decrypt and verify', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-pipe-');
  try {
    const config = join(dir, 'enc.yaml');
    writeFileSync(config, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [configmaps, secrets]
    providers:
      - aescbc: { keys: [{ name: key1, secret: "${KEY}" }] }
      - identity: {}
`);
    const store = openSqliteStore(join(dir, 'store.db'));
    // One 1 MiB plaintext value, and 1,500 secrets that do not decrypt (a verify report of ~500 KB).
    const big = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'big', namespace: 'default' }, data: { k: 'x'.repeat(1 << 20) } });
    await store.create('/registry/configmaps/default/big', Buffer.from(big));
    for (let i = 0; i < 1500; i++) await store.create(`/registry/secrets/default/broken-${String(i).padStart(4, '0')}`, Buffer.from('k8s:enc:aescbc:v1:key1:short'));
    await store.close();

    const cases: Array<[string, string[]]> = [
      ['get-raw KEY', ['get-raw', '/registry/configmaps/default/big', '--data-dir', dir]],
      ['get-raw --prefix', ['get-raw', '--prefix', '/registry/', '--data-dir', dir]],
      ['decrypt KEY', ['decrypt', '--encryption-provider-config', config, '--data-dir', dir, '/registry/configmaps/default/big']],
      ['decrypt --prefix -o json', ['decrypt', '--encryption-provider-config', config, '--data-dir', dir, '--prefix', '/registry/configmaps/', '-o', 'json']],
      ['verify -o json', ['verify', '--encryption-provider-config', config, '--data-dir', dir, '-o', 'json']],
    ];
    for (const [name, args] of cases) {
      const errFile = join(dir, 'stderr.txt');
      const quoted = [process.execPath, cliPath, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
      const run = spawnSync('bash', ['-c', `set -o pipefail; ${quoted} 2>'${errFile}' | head -c 100 > /dev/null; echo "\${PIPESTATUS[0]} \${PIPESTATUS[1]}"`], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(run.error, undefined, name);
      assert.equal(run.stdout.trim(), '141 0', `${name}: atrest's and head's exit codes`);
      assert.equal(readFileSync(errFile, 'utf8'), '', `${name}: nothing on stderr`);
    }
  } finally {
    await cleanup();
  }
});
