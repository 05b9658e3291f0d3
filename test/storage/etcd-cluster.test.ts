// The etcd backend on a real 3-member cluster: writes through one member are read through another,
// and losing a member (the leader) loses no acknowledged write, while writes and a watch carry on.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { isStoreError } from '../../src/storage/errors.js';
import { openEtcdStore } from '../../src/storage/etcd.js';
import type { Store } from '../../src/storage/types.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { collect, revOf, uniquePrefix, waitFor } from './conformance.js';

const run = promisify(execFile);

/** The index of the current leader, from etcdctl's endpoint status. */
async function leaderIndex(cluster: EtcdCluster): Promise<number> {
  const { stdout } = await run('/usr/bin/etcdctl', ['--endpoints', cluster.endpoints.join(','), 'endpoint', 'status', '-w', 'json'], {
    env: { ...process.env, ETCDCTL_API: '3' },
  });
  const statuses = JSON.parse(stdout) as Array<{ Endpoint: string; Status: { header: { member_id: number | string }; leader: number | string } }>;
  const leader = String(statuses[0]?.Status.leader);
  const idx = statuses.findIndex((s) => String(s.Status.header.member_id) === leader);
  assert.ok(idx >= 0, 'etcdctl names a leader');
  return cluster.endpoints.indexOf((statuses[idx] as { Endpoint: string }).Endpoint);
}

describe('etcd store on a 3-member cluster', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  let cluster: EtcdCluster;
  const stores: Store[] = [];
  const open = (endpoints: string[]) => {
    const s = openEtcdStore({ endpoints, requestTimeoutMs: 10_000, writeAttemptTimeoutMs: 1_500 });
    stores.push(s);
    return s;
  };
  before(async () => {
    cluster = await startEtcdCluster(3);
  });
  after(async () => {
    for (const s of stores) await s.close();
    await cluster?.cleanup();
  });

  it('a write through one member is read through another', async () => {
    const p = uniquePrefix();
    const a = open([cluster.endpoints[0] as string]);
    const b = open([cluster.endpoints[1] as string]);
    const c = open([cluster.endpoints[2] as string]);
    const rev = await a.create(p + 'k', Buffer.from('from-a'));
    assert.deepEqual(await b.get(p + 'k'), { key: p + 'k', value: Buffer.from('from-a'), modRevision: rev, createRevision: rev });
    const rev2 = await c.update(p + 'k', Buffer.from('from-c'), rev);
    const err = await a.update(p + 'k', Buffer.from('stale'), rev).catch((e: unknown) => e);
    assert.ok(isStoreError(err, 'CONFLICT'), 'a stale write through another member conflicts');
    assert.equal(err.current?.modRevision, rev2);
    assert.equal((await b.revision()) >= rev2, true);
  });

  it('killing the leader, then stopping each member in turn, loses no acknowledged write; writes and a watch continue', async (t) => {
    const p = uniquePrefix();
    const all = open(cluster.endpoints);
    const start = await all.revision();
    const watch = collect(all, p, start);
    const acked = new Map<string, { value: string; rev: number }>();
    let failures = 0;
    let stopWriting = false;
    let i = 0;
    const writer = (async () => {
      while (!stopWriting && i < 5000) {
        const key = `${p}${String(i).padStart(5, '0')}`;
        const value = `value-${i}`;
        try {
          const rev = await all.create(key, Buffer.from(value));
          acked.set(key, { value, rev });
          i++;
        } catch (err) {
          // The store already retried within its deadline; an error here is not an acknowledgement.
          if (!isStoreError(err, 'UNAVAILABLE') && !isStoreError(err, 'KEY_EXISTS')) throw err;
          failures++;
          if (isStoreError(err, 'KEY_EXISTS')) i++;
        }
      }
    })();
    try {
      await waitFor(() => acked.size >= 50, 'writes before the stop', 30_000);
      // Stop each member in turn, the leader first and by SIGKILL (a crash, so the others must elect
      // a new leader); whichever member the watch stream uses goes down once.
      const leader = await leaderIndex(cluster);
      const order = [leader, ...[0, 1, 2].filter((j) => j !== leader)];
      for (const j of order) {
        const member = cluster.members[j];
        assert.ok(member);
        await member.stop({ kill: j === leader });
        const atStop = acked.size;
        await waitFor(() => acked.size >= atStop + 50, `writes while ${member.name} is down`, 60_000);
        await member.start();
        const atRestart = acked.size;
        await waitFor(() => acked.size >= atRestart + 20, `writes after ${member.name} rejoined`, 60_000);
      }
      stopWriting = true;
      await writer;
      const victim = cluster.members[leader] as EtcdCluster['members'][number];
      const survivorUrl = cluster.endpoints.find((_, j) => j !== leader) as string;

      // Every acknowledged write is there, read through a survivor and through the rejoined member.
      const survivor = open([survivorUrl]);
      const rejoined = open([victim.clientUrl]);
      for (const reader of [survivor, rejoined]) {
        const items = new Map<string, string>();
        let afterKey: string | undefined;
        let revision: number | undefined;
        for (;;) {
          const page = await reader.list(p, { limit: 500, after: afterKey, revision });
          for (const kv of page.items) items.set(kv.key, kv.value.toString());
          revision = page.revision;
          if (!page.more) break;
          afterKey = page.items[page.items.length - 1]?.key;
        }
        for (const [key, { value }] of acked) assert.equal(items.get(key), value, `acknowledged ${key} is stored`);
      }
      // The watch saw every acknowledged write, in revision order, across the failover.
      const lastRev = Math.max(...[...acked.values()].map((a) => a.rev));
      await waitFor(() => watch.events.length > 0 && revOf(watch.events[watch.events.length - 1]!) >= lastRev, 'the watch to catch up', 30_000);
      assert.deepEqual(watch.errors, []);
      const revs = watch.events.map(revOf);
      assert.deepEqual(revs, [...revs].sort((x, y) => x - y), 'watch events in revision order');
      const seen = new Set(watch.events.map((e) => (e.type === 'put' ? e.kv.key : e.key)));
      for (const key of acked.keys()) assert.ok(seen.has(key), `the watch saw ${key}`);
      t.diagnostic(`${acked.size} acknowledged writes, ${failures} failed attempts, ${watch.events.length} watch events`);
      assert.ok(acked.size >= 260, `${acked.size} acknowledged writes (${failures} failed attempts)`);
    } finally {
      stopWriting = true;
      await writer.catch(() => undefined);
      watch.close();
    }
  });
});
