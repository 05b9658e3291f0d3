// Issue #20 §3, a store that cannot write says so: real disks and a real etcd refuse writes for a
// lasting reason, and `atrest serve` (the built CLI) answers each as such — not as the transient
// 503 "the storage backend is unavailable" with Retry-After that makes kubectl retry — logs the
// cause and the remedy, fails its `storage-writable` readiness check (kube-style `[-]` line), and a
// restart on the broken data directory says what is wrong and what to do.
//   - embedded store on a tmpfs that fills up (ENOSPC / SQLITE_FULL), then space freed;
//   - embedded store on a failing disk (ext4, errors=remount-ro, on a loop device that runs out of
//     backing store: EIO, then the kernel remounts it read-only: EROFS), then a restart on it;
//   - a restart on a read-only data directory (a read-only bind mount; without root: chmod 0500);
//   - etcd with a small --max-request-bytes (413 as kube) and a small --quota-backend-bytes (NOSPACE).
// Mounting needs root: without it the disk cases are skipped with the reason (the chmod case runs).
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { RunningApiServer } from '../../src/api/index.js';
import { runCli } from '../helpers/cli.js';
import { etcdAvailable, startEtcdCluster } from '../helpers/etcd.js';
import { bindReadOnly, failingDisk, fillUp, fillWith, mountSupport, mountTmpfs, unmount } from '../helpers/mounts.js';
import { waitFor } from '../helpers/plugin.js';
import { apiRequest, serveClient, type HttpResult } from '../helpers/server.js';
import { ServeProcess } from '../helpers/task-page.js';
import { report } from './load.js';

const SECRETS = '/api/v1/namespaces/default/secrets';
const figures: Record<string, unknown> = {};
let root = '';
let noMounts: string | undefined;

before(() => {
  root = mkdtempSync(join(tmpdir(), 'atrest-store-failures-'));
  noMounts = mountSupport(root);
});
after(() => {
  report('store-write-failures', figures);
  rmSync(root, { recursive: true, force: true });
});

function clientOf(serve: ServeProcess, dataDir: string): RunningApiServer {
  return serveClient(serve.url, dataDir);
}

const secret = (name: string, bytes: number): string =>
  JSON.stringify({ metadata: { name }, data: { v: Buffer.alloc(bytes, name.length).toString('base64') } });

/** Creates secrets of `bytes` until one is refused; returns the refusal and how many were acknowledged. */
async function writeUntilRefused(server: RunningApiServer, prefix: string, bytes: number, max = 200): Promise<{ refused: HttpResult; acknowledged: string[] }> {
  const acknowledged: string[] = [];
  for (let i = 0; i < max; i++) {
    const r = await apiRequest(server, 'POST', SECRETS, { body: secret(`${prefix}-${i}`, bytes), agent: false });
    if (r.status !== 201) return { refused: r, acknowledged };
    acknowledged.push(`${prefix}-${i}`);
  }
  throw new Error(`${max} writes of ${bytes} bytes were all acknowledged`);
}

/** A lasting refusal: 500 naming `cause`, never 503, no Retry-After (kubectl would retry it). */
function assertLastingRefusal(r: HttpResult, cause: RegExp): void {
  assert.equal(r.status, 500, r.text);
  assert.equal(r.headers['retry-after'], undefined, 'no Retry-After on a lasting failure');
  const st = r.json<{ reason: string; message: string }>();
  assert.equal(st.reason, 'InternalError');
  assert.match(st.message, /^Internal error occurred: the storage cannot write secrets "[^"]+": /);
  assert.match(st.message, cause);
}

/** The server's log (its stderr, read asynchronously) comes to match `pattern`. */
async function logged(serve: ServeProcess, pattern: RegExp): Promise<void> {
  await waitFor(`a log line matching ${pattern}`, () => pattern.test(serve.log()), 10_000);
}

async function readyz(server: RunningApiServer): Promise<HttpResult> {
  return apiRequest(server, 'GET', '/readyz?verbose', { token: null });
}

test('embedded store on a disk that fills up: 500 naming the full disk, readyz fails, recovers when space is freed, restart says what to do', { timeout: 120_000 }, async (t) => {
  if (noMounts) return t.skip(noMounts);
  const disk = join(root, 'full');
  mountTmpfs(disk, 4 * 1024 * 1024);
  const dataDir = join(disk, 'data');
  let serve: ServeProcess | undefined;
  try {
    // Leave the store ~1.5 MiB: a few dozen 64 KiB secrets.
    const filler = fillWith(disk, 'filler', 2_500_000);
    serve = await ServeProcess.start(['--data-dir', dataDir]);
    const server = clientOf(serve, dataDir);
    const { refused, acknowledged } = await writeUntilRefused(server, 'fill', 64 * 1024);
    assertLastingRefusal(refused, /no space left/);
    assert.ok(acknowledged.length > 0);
    assert.equal((await apiRequest(server, 'GET', `${SECRETS}/${acknowledged[0]}`)).status, 200, 'reads go on');
    const ready = await readyz(server);
    assert.equal(ready.status, 500);
    assert.match(ready.text, /^\[-\]storage-writable failed: reason withheld$/m);
    assert.match(ready.text, /^\[\+\]etcd ok$/m, 'the store answers: only writing is the problem');
    assert.equal((await apiRequest(server, 'GET', '/livez', { token: null })).status, 200, 'not restarted for it');
    await logged(serve, /no space left on the device \(SQLITE_FULL\)\. To fix: free space on the file system of [^"]+","key":"[^"]+","code":"NO_SPACE"/);
    assert.doesNotMatch(serve.log(), /the storage backend is unavailable/);

    // Space freed: writes work and the server is ready again.
    rmSync(filler);
    const again = await apiRequest(server, 'POST', SECRETS, { body: secret('after-free', 1024) });
    assert.equal(again.status, 201, again.text);
    await waitFor('readyz after space was freed', async () => (await readyz(server)).status === 200, 15_000);
    figures['fullDisk'] = { acknowledgedBeforeFull: acknowledged.length, refusal: refused.status, readyzWhileFull: ready.status, recovered: true };

    // Full again, and restarted: it says what is wrong and what to do.
    await serve.stop();
    serve = undefined;
    fillUp(disk, 'filler2');
    const r = await runCli(['serve', '--data-dir', dataDir, '--secure-port', '0']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^atrest: cannot [^\n]* in the data directory \S+ \(--data-dir\): no space left on the device \((ENOSPC|SQLITE_FULL|SQLITE_IOERR_SHMSIZE)\)\. To fix: free space on the file system of /m);
    figures['restartOnFullDisk'] = r.stderr.trim().split('\n').pop();
  } finally {
    await serve?.stop();
    unmount(disk);
  }
});

test('embedded store on a failing disk (I/O errors, then remounted read-only): 500 naming it, readyz fails, restart names the read-only file system', { timeout: 120_000 }, async (t) => {
  if (noMounts) return t.skip(noMounts);
  const disk = failingDisk(join(root, 'failing'), 6 * 1024 * 1024);
  const dataDir = join(disk.mountPoint, 'data');
  let serve: ServeProcess | undefined;
  try {
    serve = await ServeProcess.start(['--data-dir', dataDir]);
    const server = clientOf(serve, dataDir);
    const { refused, acknowledged } = await writeUntilRefused(server, 'io', 256 * 1024);
    assertLastingRefusal(refused, /the disk reported an I\/O error|read-only/);
    const later = await apiRequest(server, 'POST', SECRETS, { body: secret('later', 1024) });
    assertLastingRefusal(later, /the disk reported an I\/O error|read-only/);
    assert.match((await readyz(server)).text, /^\[-\]storage-writable failed: reason withheld$/m);
    await logged(serve, /\((SQLITE_IOERR[A-Z_]*|SQLITE_READONLY[A-Z_]*|EIO|EROFS)\)\. To fix: (check the disk under|make)/);
    figures['failingDisk'] = { acknowledgedBeforeFailure: acknowledged.length, firstRefusal: refused.json<{ message: string }>().message };
    await serve.stop();
    serve = undefined;

    const r = await runCli(['serve', '--data-dir', dataDir, '--secure-port', '0']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^atrest: cannot [^\n]* in the data directory \S+ \(--data-dir\): the file system is read-only \(EROFS\)\. To fix: make \S+ writable by the user running atrest \(remount its file system read-write/m);
    figures['restartOnFailedDisk'] = r.stderr.trim().split('\n').pop();
  } finally {
    await serve?.stop();
    disk.cleanup();
  }
});

test('restart on a read-only data directory says what is wrong and what to do', { timeout: 60_000 }, async () => {
  const dataDir = join(root, 'ro-source');
  const serve = await ServeProcess.start(['--data-dir', dataDir]);
  await serve.stop();
  let where = dataDir;
  let expected: RegExp;
  if (noMounts) {
    // Without root: a directory without write permission (root would not be stopped by it).
    chmodSync(dataDir, 0o500);
    expected = /permission denied \(EACCES\)\. To fix: make \S+ writable by the user running atrest/;
  } else {
    where = join(root, 'ro-mount');
    bindReadOnly(dataDir, where);
    expected = /the file system is read-only \(EROFS\)\. To fix: make \S+ writable by the user running atrest \(remount its file system read-write, or fix its owner and mode\), or point --data-dir at a writable directory/;
  }
  try {
    const r = await runCli(['serve', '--data-dir', where, '--secure-port', '0']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`^atrest: cannot open the embedded store in the data directory ${where.replace(/[/.-]/g, '\\$&')} \\(--data-dir\\): `, 'm'));
    assert.match(r.stderr, expected);
    assert.doesNotMatch(r.stderr, /^atrest: E[A-Z]+:/m, 'not a bare errno');
    figures['restartReadOnly'] = { via: noMounts ? 'chmod 0500' : 'read-only bind mount', message: r.stderr.trim().split('\n').pop() };
  } finally {
    if (noMounts) chmodSync(dataDir, 0o700);
    else unmount(where);
  }
});

test('etcd refuses a value over --max-request-bytes (413 as kube) and every write at its quota (NOSPACE alarm)', { timeout: 120_000, skip: !etcdAvailable() && 'etcd not installed' }, async () => {
  const etcd = await startEtcdCluster(1, { extraArgs: ['--max-request-bytes', String(200 * 1024), '--quota-backend-bytes', String(4 * 1024 * 1024)] });
  const dataDir = join(root, 'etcd-serve');
  const serve = await ServeProcess.start(['--data-dir', dataDir, '--etcd-servers', etcd.endpoints.join(',')]);
  try {
    const server = clientOf(serve, dataDir);
    // Under the 3 MiB body limit, over etcd's: kube's answer.
    const big = await apiRequest(server, 'POST', SECRETS, { body: secret('too-big', 300 * 1024) });
    assert.equal(big.status, 413, big.text);
    assert.equal(big.headers['retry-after'], undefined);
    assert.deepEqual([big.json()['reason'], big.json()['message']], ['RequestEntityTooLarge', 'Request entity too large: etcdserver: request is too large']);
    assert.equal((await apiRequest(server, 'POST', SECRETS, { body: secret('small', 1024) })).status, 201);
    const grown = await apiRequest(server, 'PUT', `${SECRETS}/small`, { body: secret('small', 300 * 1024) });
    assert.equal(grown.status, 413, grown.text);
    assert.equal((await readyz(server)).status, 200, 'one value too large does not make the store unwritable');

    // Past --quota-backend-bytes etcd raises NOSPACE and refuses every write.
    const { refused, acknowledged } = await writeUntilRefused(server, 'quota', 100 * 1024, 400);
    assertLastingRefusal(refused, /no space left/);
    const ready = await readyz(server);
    assert.equal(ready.status, 500);
    assert.match(ready.text, /^\[-\]storage-writable failed: reason withheld$/m);
    await logged(serve, /etcdserver: mvcc: database space exceeded \(etcd's NOSPACE alarm: compact and defragment etcd/);
    assert.equal((await apiRequest(server, 'GET', `${SECRETS}/${acknowledged[0]}`)).status, 200, 'reads go on');
    figures['etcd'] = { tooLarge: big.status, acknowledgedBeforeQuota: acknowledged.length, quotaRefusal: refused.status, readyzAtQuota: ready.status };
  } finally {
    await serve.stop();
    await etcd.cleanup();
  }
});
