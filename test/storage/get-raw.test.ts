// `atrest get-raw` run as a process (from source) against both backends: the stored bytes exactly,
// and a --prefix listing byte-identical to `etcdctl get --prefix`.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openEtcdStore } from '../../src/storage/etcd.js';
import { openSqliteStore, STORE_FILE_NAME } from '../../src/storage/sqlite.js';
import type { Store } from '../../src/storage/types.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { captureLog } from '../helpers/test-log.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const runTs = join(repoRoot, 'src/cli/run.ts');

/** This process's environment without the store-selecting variables a developer may have set. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('ATREST_ETCD_') || name === 'ATREST_DATA_DIR') delete env[name];
  return env;
}

function getRaw(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', runTs, 'get-raw', ...args], {
      cwd: repoRoot,
      env: { ...cleanEnv(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    captureLog('get-raw', child.stderr);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
  });
}

// Every byte value, including newline and NUL, as an encrypted value would have.
const BINARY = Buffer.concat([Buffer.from('k8s:enc:kms:v2:p:'), Buffer.from(Array.from({ length: 256 }, (_, i) => i))]);

describe('atrest get-raw on the embedded store', () => {
  let dir: string;
  let store: Store;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'atrest-getraw-'));
    // The writer stays open, as a running `atrest serve` would.
    store = openSqliteStore(join(dir, STORE_FILE_NAME), { compactIntervalMs: 0 });
    await store.create('/registry/secrets/default/s1', BINARY);
    await store.create('/registry/secrets/default/s2', Buffer.from('plain'));
    await store.create('/registry/secrets/other/s3', Buffer.from('x'));
    await store.create('/registry/configmaps/default/c', Buffer.from('c'));
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints the stored bytes exactly', async () => {
    const r = await getRaw(['/registry/secrets/default/s1', '--data-dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.equals(BINARY));
  });

  it('lists a prefix as key line, value, newline; --keys-only and --limit', async () => {
    const r = await getRaw(['/registry/secrets/default/', '--prefix'], { ATREST_DATA_DIR: dir });
    assert.equal(r.code, 0, r.stderr);
    const expected = Buffer.concat([
      Buffer.from('/registry/secrets/default/s1\n'), BINARY, Buffer.from('\n'),
      Buffer.from('/registry/secrets/default/s2\nplain\n'),
    ]);
    assert.ok(r.stdout.equals(expected), r.stdout.toString('latin1'));
    const keys = await getRaw(['/registry/secrets/', '--prefix', '--keys-only', '--limit', '2', '--data-dir', dir]);
    assert.equal(keys.stdout.toString(), '/registry/secrets/default/s1\n/registry/secrets/default/s2\n');
  });

  it('a missing key exits 1 naming the key; a missing data dir names the store file and exits 2', async () => {
    const r = await getRaw(['/registry/secrets/default/nope', '--data-dir', dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\/registry\/secrets\/default\/nope not found/);
    assert.equal(r.stdout.length, 0);
    const none = await getRaw(['/k', '--data-dir', join(dir, 'absent')]);
    assert.equal(none.code, 2, 'a usage error, as for the other tools');
    assert.match(none.stderr, /store\.db/);
  });
});

describe('atrest get-raw on etcd', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  let etcd: EtcdCluster;
  let store: Store;
  before(async () => {
    etcd = await startEtcdCluster(1);
    store = openEtcdStore({ endpoints: etcd.endpoints });
    await store.create('/registry/secrets/default/s1', BINARY);
    await store.create('/registry/secrets/default/s2', Buffer.from('two\nlines'));
  });
  after(async () => {
    await store?.close();
    await etcd?.cleanup();
  });

  it('prints the stored bytes exactly, and lists a prefix byte-identical to etcdctl', async () => {
    const one = await getRaw(['/registry/secrets/default/s1', '--etcd-servers', etcd.endpoints.join(',')]);
    assert.equal(one.code, 0, one.stderr);
    assert.ok(one.stdout.equals(BINARY));
    const ours = await getRaw(['/registry/secrets/', '--prefix'], { ATREST_ETCD_SERVERS: etcd.endpoints[0] as string });
    assert.equal(ours.code, 0, ours.stderr);
    const theirs = await promisify(execFile)('/usr/bin/etcdctl', ['--endpoints', etcd.endpoints[0] as string, 'get', '--prefix', '/registry/secrets/'], {
      env: { ...process.env, ETCDCTL_API: '3' },
      encoding: 'buffer',
    });
    assert.ok(ours.stdout.equals(theirs.stdout), `get-raw:\n${ours.stdout.toString('latin1')}\netcdctl:\n${theirs.stdout.toString('latin1')}`);
  });
});

describe('atrest get-raw on etcd over TLS', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  it('reads with --etcd-cafile, --etcd-certfile and --etcd-keyfile', async () => {
    const etcd = await startEtcdCluster(1, { tls: true });
    const tls = etcd.tls;
    assert.ok(tls);
    const store = openEtcdStore({ endpoints: etcd.endpoints, tls: { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey } });
    try {
      await store.create('/registry/secrets/default/s1', BINARY);
      const r = await getRaw([
        '/registry/secrets/default/s1',
        '--etcd-servers', etcd.endpoints.join(','),
        '--etcd-cafile', tls.caFile,
        '--etcd-certfile', tls.clientCertFile,
        '--etcd-keyfile', tls.clientKeyFile,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.equals(BINARY));
    } finally {
      await store.close();
      await etcd.cleanup();
    }
  });
});
