// The bbolt / etcd snapshot reader against real `etcdctl snapshot save` files: the status it computes
// (CRC-32C hash, revision, key count, size) equals `etcdctl snapshot status`, the live keys equal
// what etcd serves (overwrites, deletions, values spanning overflow pages, branch pages), and damaged
// or hostile files (random byte damage, truncation, a page that points at itself) give a BboltError,
// never another exception or an endless walk.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { openEtcdStore } from '../../src/storage/etcd.js';
import { BboltError, BboltFile } from '../../src/tools/bbolt.js';
import { readEtcdSnapshot } from '../../src/tools/etcd-snapshot.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';

const run = promisify(execFile);
const ETCDCTL = '/usr/bin/etcdctl';

/** Deterministic bytes of a given size (no secrets here: these values only test the reader). */
function valueOf(i: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let j = 0; j < size; j++) b[j] = (i * 31 + j * 7) & 0xff;
  return b;
}

describe('etcd snapshot reader', { skip: !etcdAvailable() && 'etcd is not installed' }, () => {
  let cluster: EtcdCluster;
  let snapshotFile: string;
  let snapshot: Buffer;
  let expected: Map<string, Buffer>;
  let lastRevision: number;

  before(async () => {
    cluster = await startEtcdCluster(1);
    const store = openEtcdStore({ endpoints: cluster.endpoints });
    expected = new Map();
    try {
      // 700 keys: many leaf pages under branch pages; every 50th value is 20 KiB (overflow pages).
      for (let i = 0; i < 700; i++) {
        const key = `/registry/things/ns${i % 7}/k${String(i).padStart(4, '0')}`;
        const value = valueOf(i, i % 50 === 0 ? 20_000 : 40 + (i % 13) * 17);
        await store.create(key, value);
        expected.set(key, value);
      }
      for (let i = 0; i < 700; i += 9) {
        const key = `/registry/things/ns${i % 7}/k${String(i).padStart(4, '0')}`;
        const kv = await store.get(key);
        const value = valueOf(i + 1000, 99);
        await store.update(key, value, kv!.modRevision);
        expected.set(key, value);
      }
      for (let i = 3; i < 700; i += 11) {
        const key = `/registry/things/ns${i % 7}/k${String(i).padStart(4, '0')}`;
        await store.delete(key);
        expected.delete(key);
      }
      lastRevision = await store.revision();
    } finally {
      await store.close();
    }
    snapshotFile = join(cluster.dir, 'snap.db');
    await run(ETCDCTL, ['--endpoints', cluster.endpoints.join(','), 'snapshot', 'save', snapshotFile], { env: { ...process.env, ETCDCTL_API: '3' } });
    snapshot = readFileSync(snapshotFile);
  });

  after(async () => {
    await cluster?.cleanup();
  });

  it('computes what `etcdctl snapshot status` reports: hash, revision, total keys, size', async () => {
    const { stdout } = await run(ETCDCTL, ['snapshot', 'status', snapshotFile, '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
    const status = JSON.parse(stdout) as { hash: number; revision: number; totalKey: number; totalSize: number };
    const ours = readEtcdSnapshot(snapshot).status;
    assert.deepEqual(ours, status);
    assert.equal(ours.revision, lastRevision);
    // the SHA-256 trailer etcdctl appends: checked, and a damaged body is noticed
    assert.equal(readEtcdSnapshot(snapshot).integrity, 'ok');
    const damaged = Buffer.from(snapshot);
    damaged[damaged.length - 40] = (damaged[damaged.length - 40] as number) ^ 1; // free space near the end: still parses
    assert.equal(readEtcdSnapshot(damaged).integrity, 'mismatch');
    assert.equal(readEtcdSnapshot(snapshot.subarray(0, snapshot.length - 32)).integrity, 'absent');
  });

  it('returns exactly the live keys and latest values (overwrites applied, deletions dropped), sorted', () => {
    const s = readEtcdSnapshot(snapshot);
    assert.deepEqual(s.keyValues.map((kv) => kv.key), [...expected.keys()].sort());
    for (const kv of s.keyValues) assert.ok(kv.value.equals(expected.get(kv.key)!), `value of ${kv.key}`);
    assert.equal(s.deleted, 64);
    const big = s.keyValues.find((kv) => kv.key === '/registry/things/ns1/k0050');
    assert.equal(big?.value.length, 20_000);
    const overwritten = s.keyValues.find((kv) => kv.key === '/registry/things/ns2/k0009');
    assert.equal(overwritten?.version, 2);
    assert.ok(overwritten!.modRevision > overwritten!.createRevision);
  });

  it('uses branch and overflow pages (the tree walk is exercised, not a single leaf)', () => {
    const db = BboltFile.open(snapshot);
    const keyBucket = [...db.rootEntries()].find((e) => e.key.toString() === 'key')!;
    let branch = 0;
    let overflow = 0;
    // The pages reachable from bucket `key`, walked by hand from the page headers.
    const visit = (pgid: bigint): void => {
      const at = Number(pgid) * db.meta.pageSize;
      if (snapshot.readUInt32LE(at + 12) > 0) overflow++;
      if (!(snapshot.readUInt16LE(at + 8) & 0x01)) return;
      branch++;
      for (let i = 0; i < snapshot.readUInt16LE(at + 10); i++) visit(snapshot.readBigUInt64LE(at + 16 + i * 16 + 8));
    };
    visit(keyBucket.value.readBigUInt64LE(0));
    assert.ok(branch >= 1, `branch pages: ${branch}`);
    assert.ok(overflow >= 1, `pages with overflow: ${overflow}`);
  });

  it('a branch page pointing at itself is a cycle: BboltError, no endless walk', () => {
    const db = BboltFile.open(snapshot);
    const copy = Buffer.from(snapshot);
    // Every branch page (free ones that still look like branches included, so the reachable ones surely are).
    let patched = 0;
    for (let p = 2; p < Number(db.meta.pgid); p++) {
      const at = p * db.meta.pageSize;
      if (copy.readBigUInt64LE(at) !== BigInt(p) || !(copy.readUInt16LE(at + 8) & 0x01)) continue;
      copy.writeBigUInt64LE(BigInt(p), at + 16 + 8); // first element's child pgid := this page
      patched++;
    }
    assert.ok(patched > 0);
    assert.throws(() => readEtcdSnapshot(copy), (err: unknown) => err instanceof BboltError && /cycle|referenced twice/.test(err.message));
  });

  it('clear errors for files that are not snapshots', () => {
    assert.throws(() => readEtcdSnapshot(Buffer.alloc(0)), { code: 'BBOLT_INVALID', message: /not a readable bbolt file/ });
    assert.throws(() => readEtcdSnapshot(Buffer.from('{"not":"bbolt"}'.repeat(1000))), { code: 'BBOLT_INVALID', message: /bad magic|not a meta page/ });
    assert.throws(() => readEtcdSnapshot(snapshot.subarray(0, snapshot.length / 2)), { code: 'BBOLT_INVALID', message: /truncated/ });
    // one damaged meta page: the other one still opens the file
    const oneMeta = Buffer.from(snapshot);
    oneMeta[20] = (oneMeta[20] as number) ^ 0xff;
    assert.equal(readEtcdSnapshot(oneMeta).keyValues.length, expected.size);
  });

  it('property: random damage to the data pages gives a result or a BboltError, never another exception', () => {
    const db = BboltFile.open(snapshot);
    const first = 2 * db.meta.pageSize;
    const end = Number(db.meta.pgid) * db.meta.pageSize;
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.integer({ min: first, max: end - 1 }), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 12 }),
        (edits) => {
          const copy = Buffer.from(snapshot);
          for (const e of edits) copy[e.at] = e.byte;
          try {
            readEtcdSnapshot(copy);
          } catch (err) {
            if (!(err instanceof BboltError)) throw err;
          }
        },
      ),
      { numRuns: 150 },
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: snapshot.length }), (len) => {
        try {
          readEtcdSnapshot(snapshot.subarray(0, len));
        } catch (err) {
          if (!(err instanceof BboltError)) throw err;
        }
      }),
      { numRuns: 60 },
    );
  });
});
