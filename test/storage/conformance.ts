// The behaviour every Store backend must share (etcd's model): run by sqlite.test.ts and etcd.test.ts
// against the real backends. Each test works under its own key prefix so one store serves the suite;
// the compaction test runs last because compaction is store-wide.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { StoreError } from '../../src/storage/errors.js';
import type { Store, WatchEvent } from '../../src/storage/types.js';
import { modelProperty } from './model.js';

export interface StoreFixture {
  store: Store;
  cleanup(): Promise<void>;
}

let prefixCounter = 0;
export function uniquePrefix(): string {
  return `/conf-${process.pid}-${Date.now().toString(36)}-${prefixCounter++}/`;
}

/** Polls `cond` every 10 ms for up to `timeoutMs`; fails with `what` when it never holds. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Collector {
  events: WatchEvent[];
  errors: Error[];
  close(): void;
}

export function collect(store: Store, prefix: string, afterRevision: number): Collector {
  const events: WatchEvent[] = [];
  const errors: Error[] = [];
  const w = store.watch(prefix, { afterRevision, onEvent: (e) => events.push(e), onError: (e) => errors.push(e) });
  return { events, errors, close: () => w.close() };
}

export function revOf(e: WatchEvent): number {
  return e.type === 'put' ? e.kv.modRevision : e.modRevision;
}

export function keyOf(e: WatchEvent): string {
  return e.type === 'put' ? e.kv.key : e.key;
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<StoreError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof StoreError, `expected StoreError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected StoreError ${code}, but the call succeeded`);
}

export function storeConformance(backend: string, open: () => Promise<StoreFixture>, modelRuns = 50): void {
  describe(`Store conformance: ${backend}`, () => {
    let fx: StoreFixture;
    let store: Store;
    before(async () => {
      fx = await open();
      store = fx.store;
    });
    after(async () => {
      await fx?.cleanup();
    });

    it('create, get, and KEY_EXISTS on a second create', async () => {
      const p = uniquePrefix();
      assert.equal(await store.get(p + 'a'), undefined);
      const rev = await store.create(p + 'a', Buffer.from('one'));
      assert.ok(rev > 0);
      const kv = await store.get(p + 'a');
      assert.deepEqual(kv, { key: p + 'a', value: Buffer.from('one'), modRevision: rev, createRevision: rev });
      const err = await rejectsWith(store.create(p + 'a', Buffer.from('two')), 'KEY_EXISTS');
      assert.equal(err.key, p + 'a');
      assert.match(err.message, new RegExp(p + 'a'));
      assert.deepEqual((await store.get(p + 'a'))?.value, Buffer.from('one'), 'the failed create changed nothing');
    });

    it('update only at the current revision; a conflict carries the current value', async () => {
      const p = uniquePrefix();
      const r1 = await store.create(p + 'k', Buffer.from('v1'));
      const r2 = await store.update(p + 'k', Buffer.from('v2'), r1);
      assert.ok(r2 > r1);
      assert.deepEqual(await store.get(p + 'k'), { key: p + 'k', value: Buffer.from('v2'), modRevision: r2, createRevision: r1 });
      const err = await rejectsWith(store.update(p + 'k', Buffer.from('v3'), r1), 'CONFLICT');
      assert.deepEqual(err.current, { key: p + 'k', value: Buffer.from('v2'), modRevision: r2, createRevision: r1 });
      assert.equal((await store.get(p + 'k'))?.modRevision, r2, 'the refused update changed nothing');
      await rejectsWith(store.update(p + 'missing', Buffer.from('x'), r2), 'NOT_FOUND');
      await rejectsWith(store.update(p + 'missing', Buffer.from('x'), 0), 'NOT_FOUND');
      assert.equal(await store.get(p + 'missing'), undefined, 'update never creates');
    });

    it('createGuarded creates only while the guard key is at the given revision', async () => {
      assert.ok(store.createGuarded, 'the backend implements createGuarded');
      const p = uniquePrefix();
      const guardKey = `${p}namespaces/ns1`;
      const g1 = await store.create(guardKey, Buffer.from('{"ns":1}'));
      const r = await store.createGuarded(`${p}secrets/ns1/a`, Buffer.from('a'), { key: guardKey, modRevision: g1 });
      assert.ok(r > g1);
      await rejectsWith(store.createGuarded(`${p}secrets/ns1/a`, Buffer.from('again'), { key: guardKey, modRevision: g1 }), 'KEY_EXISTS');
      // The guard moves (the namespace is marked Terminating): no create at the old revision.
      const g2 = await store.update(guardKey, Buffer.from('{"ns":1,"terminating":true}'), g1);
      const moved = await rejectsWith(store.createGuarded(`${p}secrets/ns1/b`, Buffer.from('b'), { key: guardKey, modRevision: g1 }), 'GUARD_CHANGED');
      assert.equal(moved.current?.modRevision, g2);
      assert.equal(moved.key, `${p}secrets/ns1/b`);
      assert.equal(await store.get(`${p}secrets/ns1/b`), undefined, 'nothing was written');
      // The guard changed is checked before the key: an existing key under a moved guard is GUARD_CHANGED.
      await rejectsWith(store.createGuarded(`${p}secrets/ns1/a`, Buffer.from('a2'), { key: guardKey, modRevision: g1 }), 'GUARD_CHANGED');
      // The guard is gone (the namespace deleted): GUARD_CHANGED too, and still nothing written.
      await store.delete(guardKey);
      const gone = await rejectsWith(store.createGuarded(`${p}secrets/ns1/c`, Buffer.from('c'), { key: guardKey, modRevision: g2 }), 'GUARD_CHANGED');
      assert.equal(gone.current, undefined);
      assert.equal(await store.get(`${p}secrets/ns1/c`), undefined);
    });

    it('createGuarded racing the deletion of its guard key: created before the delete, or refused and absent', async () => {
      assert.ok(store.createGuarded, 'the backend implements createGuarded');
      const createGuarded = store.createGuarded.bind(store);
      const p = uniquePrefix();
      for (let round = 0; round < 20; round++) {
        const guardKey = `${p}namespaces/ns${round}`;
        const g = await store.create(guardKey, Buffer.from('ns'));
        const child = `${p}secrets/ns${round}/s`;
        // Both orders within one tick (on the embedded store: one group commit), alternating.
        const del = () => store.delete(guardKey, g);
        const create = () => createGuarded(child, Buffer.from('s'), { key: guardKey, modRevision: g });
        let d: PromiseSettledResult<unknown>;
        let c: PromiseSettledResult<number>;
        if (round % 2 === 0) [d, c] = await Promise.allSettled([del(), create()]);
        else [c, d] = await Promise.allSettled([create(), del()]);
        assert.equal(d.status, 'fulfilled', 'the delete is not refused');
        const deletedAt = await store.revision(); // nothing else writes meanwhile: the delete's revision
        if (c.status === 'fulfilled') {
          assert.ok(c.value < deletedAt, `round ${round}: the create (${c.value}) landed before the delete`);
        } else {
          assert.equal((c.reason as StoreError).code, 'GUARD_CHANGED', `round ${round}: ${String(c.reason)}`);
          assert.equal(await store.get(child), undefined, `round ${round}: nothing left under the deleted guard`);
        }
      }
    });

    it('concurrent updates at one revision: exactly one wins', async () => {
      const p = uniquePrefix();
      const r1 = await store.create(p + 'race', Buffer.from('start'));
      const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => store.update(p + 'race', Buffer.from(`w${i}`), r1)));
      const won = results.filter((r) => r.status === 'fulfilled');
      assert.equal(won.length, 1);
      for (const r of results) {
        if (r.status === 'rejected') assert.equal((r.reason as StoreError).code, 'CONFLICT');
      }
      const kv = await store.get(p + 'race');
      assert.equal(kv?.modRevision, (won[0] as PromiseFulfilledResult<number>).value);
    });

    it('delete, delete at a revision, conflict on a stale delete, and re-create', async () => {
      const p = uniquePrefix();
      const r1 = await store.create(p + 'd', Buffer.from('x'));
      assert.equal(await store.delete(p + 'nothing'), undefined);
      assert.equal(await store.delete(p + 'nothing', 5), undefined);
      const r2 = await store.update(p + 'd', Buffer.from('y'), r1);
      const err = await rejectsWith(store.delete(p + 'd', r1), 'CONFLICT');
      assert.equal(err.current?.modRevision, r2);
      assert.deepEqual(err.current?.value, Buffer.from('y'));
      assert.ok(await store.get(p + 'd'), 'the refused delete removed nothing');
      const deleted = await store.delete(p + 'd', r2);
      assert.deepEqual(deleted, { key: p + 'd', value: Buffer.from('y'), modRevision: r2, createRevision: r1 });
      assert.equal(await store.get(p + 'd'), undefined);
      await rejectsWith(store.update(p + 'd', Buffer.from('z'), r2), 'NOT_FOUND');
      const r4 = await store.create(p + 'd', Buffer.from('again'));
      assert.ok(r4 > r2);
      assert.equal((await store.get(p + 'd'))?.createRevision, r4, 'a re-created key has a new create revision');
      const unconditional = await store.delete(p + 'd');
      assert.equal(unconditional?.modRevision, r4);
    });

    it('revisions strictly increase across keys and match revision()', async () => {
      const p = uniquePrefix();
      let last = await store.revision();
      const revs: number[] = [];
      for (let i = 0; i < 20; i++) {
        const key = `${p}${i % 3}`;
        const cur = await store.get(key);
        const rev = cur ? await store.update(key, Buffer.from(String(i)), cur.modRevision) : await store.create(key, Buffer.from(String(i)));
        assert.ok(rev > last, `revision ${rev} after ${last}`);
        last = rev;
        revs.push(rev);
      }
      assert.equal(await store.revision(), last);
      const listed = await store.list(p);
      assert.equal(listed.revision, last);
      assert.equal(new Set(revs).size, revs.length);
    });

    it('binary values round-trip byte-exact (all byte values, empty, Uint8Array views)', async () => {
      const p = uniquePrefix();
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      await store.create(p + 'all', all);
      assert.deepEqual((await store.get(p + 'all'))?.value, all);
      await store.create(p + 'empty', new Uint8Array(0));
      const empty = await store.get(p + 'empty');
      assert.ok(empty, 'an empty value is still a key');
      assert.equal(empty.value.length, 0);
      const backing = new Uint8Array(64);
      backing.set(randomBytes(64));
      const view = backing.subarray(7, 40);
      await store.create(p + 'view', view);
      assert.deepEqual((await store.get(p + 'view'))?.value, Buffer.from(view));
      const big = randomBytes(256 * 1024);
      await store.create(p + 'big', big);
      assert.ok((await store.get(p + 'big'))?.value.equals(big));
      const listed = await store.list(p);
      assert.ok(listed.items.find((kv) => kv.key === p + 'all')?.value.equals(all));
    });

    it('list returns the prefix only, in byte order, with limit and continuation', async () => {
      const p = uniquePrefix();
      const names = ['b', 'a', 'B', 'a0', 'a/x', '\u00e9', 'z', '~'];
      for (const n of names) await store.create(p + n, Buffer.from(n));
      // Neighbours that a sloppy prefix match would include.
      await store.create(p.slice(0, -1), Buffer.from('parent'));
      await store.create(p.slice(0, -1) + '0', Buffer.from('sibling'));
      const expected = names.map((n) => Buffer.from(p + n)).sort(Buffer.compare).map((b) => b.toString('utf8'));
      const all = await store.list(p);
      assert.deepEqual(all.items.map((kv) => kv.key), expected);
      assert.equal(all.more, false);
      const pages: string[][] = [];
      let afterKey: string | undefined;
      let revision: number | undefined;
      for (;;) {
        const page = await store.list(p, { limit: 3, after: afterKey, revision });
        pages.push(page.items.map((kv) => kv.key));
        revision = page.revision;
        if (!page.more) break;
        afterKey = page.items[page.items.length - 1]?.key;
      }
      assert.deepEqual(pages.map((pg) => pg.length), [3, 3, 2]);
      assert.deepEqual(pages.flat(), expected);
      const limited = await store.list(p, { limit: 8 });
      assert.equal(limited.items.length, 8);
      assert.equal(limited.more, false, 'exactly limit items: nothing more');
    });

    it('paging at a fixed revision is consistent while writes happen', async () => {
      const p = uniquePrefix();
      for (let i = 0; i < 12; i++) await store.create(`${p}${String(i).padStart(2, '0')}`, Buffer.from(`v${i}`));
      const first = await store.list(p, { limit: 4 });
      const snapshot = first.revision;
      const seen = [...first.items];
      let afterKey = first.items[first.items.length - 1]?.key;
      let more = first.more;
      let round = 0;
      while (more) {
        // Between pages: change a key not read yet, delete one, add one past the end.
        const victim = `${p}${String(4 + round * 4).padStart(2, '0')}`;
        const cur = await store.get(victim);
        if (cur) await store.update(victim, Buffer.from('changed'), cur.modRevision);
        await store.delete(`${p}${String(5 + round * 4).padStart(2, '0')}`);
        await store.create(`${p}zz${round}`, Buffer.from('new'));
        const page = await store.list(p, { limit: 4, after: afterKey, revision: snapshot });
        assert.equal(page.revision, snapshot);
        seen.push(...page.items);
        afterKey = page.items[page.items.length - 1]?.key;
        more = page.more;
        round++;
      }
      assert.deepEqual(
        seen.map((kv) => [kv.key, kv.value.toString()]),
        Array.from({ length: 12 }, (_, i) => [`${p}${String(i).padStart(2, '0')}`, `v${i}`]),
        'every page shows the state at the first page revision',
      );
      const now = await store.list(p);
      assert.ok(now.revision > snapshot);
      assert.ok(now.items.some((kv) => kv.value.toString() === 'changed'));
    });

    it('list at an older revision sees the older values; a future revision is refused', async () => {
      const p = uniquePrefix();
      const r1 = await store.create(p + 'k', Buffer.from('old'));
      await store.update(p + 'k', Buffer.from('new'), r1);
      await store.create(p + 'later', Buffer.from('x'));
      const then = await store.list(p, { revision: r1 });
      assert.deepEqual(then.items.map((kv) => [kv.key, kv.value.toString()]), [[p + 'k', 'old']]);
      assert.equal(then.revision, r1);
      await rejectsWith(store.list(p, { revision: (await store.revision()) + 1000 }), 'FUTURE_REVISION');
    });

    it('watch delivers history after a revision, then live put/delete events in order, only for the prefix', async () => {
      const p = uniquePrefix();
      const r0 = await store.revision();
      const ra = await store.create(p + 'a', Buffer.from('a1'));
      await store.create(p.slice(0, -1) + 'X', Buffer.from('outside'));
      const ra2 = await store.update(p + 'a', Buffer.from('a2'), ra);
      const c = collect(store, p, r0);
      try {
        await waitFor(() => c.events.length >= 2, 'the catch-up events');
        const rb = await store.create(p + 'b', Buffer.from('b1'));
        const rdel = (await store.delete(p + 'a')) && (await store.revision());
        await store.create(p.slice(0, -1) + 'Y', Buffer.from('outside'));
        const rb2 = await store.update(p + 'b', Buffer.from('b2'), rb);
        await waitFor(() => c.events.length >= 5, 'the live events');
        assert.deepEqual(c.errors, []);
        const summary = c.events.map((e) => [e.type, keyOf(e), revOf(e)]);
        assert.deepEqual(summary, [
          ['put', p + 'a', ra],
          ['put', p + 'a', ra2],
          ['put', p + 'b', rb],
          ['delete', p + 'a', rdel],
          ['put', p + 'b', rb2],
        ]);
        const [e0, e1, , e3, e4] = c.events;
        assert.ok(e0?.type === 'put' && e0.kv.value.equals(Buffer.from('a1')) && e0.kv.createRevision === ra && e0.prev === undefined);
        assert.ok(e1?.type === 'put' && e1.kv.value.equals(Buffer.from('a2')) && e1.prev?.value.equals(Buffer.from('a1')) && e1.prev.modRevision === ra);
        assert.ok(e3?.type === 'delete' && e3.prev?.value.equals(Buffer.from('a2')) && e3.prev.modRevision === ra2, 'delete carries the deleted value');
        assert.ok(e4?.type === 'put' && e4.prev?.value.equals(Buffer.from('b1')));
      } finally {
        c.close();
      }
    });

    it('watch from the middle of history delivers exactly the later events; close stops delivery', async () => {
      const p = uniquePrefix();
      const revs: number[] = [];
      for (let i = 0; i < 6; i++) revs.push(await store.create(`${p}${i}`, Buffer.from(String(i))));
      const c = collect(store, p, revs[2] as number);
      await waitFor(() => c.events.length >= 3, 'events after the third write');
      assert.deepEqual(c.events.map(revOf), revs.slice(3));
      c.close();
      await store.create(p + 'after-close', Buffer.from('x'));
      // Give a closed watch every chance to misbehave: another watch sees the write, the closed one must not.
      const probe = collect(store, p, revs[5] as number);
      await waitFor(() => probe.events.length >= 1, 'the probe watch');
      probe.close();
      assert.equal(c.events.length, 3);
      assert.deepEqual(c.errors, []);
    });

    it('many writes reach a watch in revision order with none missing', async () => {
      const p = uniquePrefix();
      const start = await store.revision();
      const c = collect(store, p, start);
      try {
        const written: number[] = [];
        const keys = 5;
        const current = new Map<string, number>();
        for (let i = 0; i < 60; i++) {
          const key = `${p}${i % keys}`;
          const rev = current.has(key) ? await store.update(key, Buffer.from(String(i)), current.get(key) as number) : await store.create(key, Buffer.from(String(i)));
          current.set(key, rev);
          written.push(rev);
        }
        await waitFor(() => c.events.length >= written.length, 'all events');
        assert.deepEqual(c.events.map(revOf), written);
      } finally {
        c.close();
      }
    });

    it('updateMany: each operation succeeds or fails on its own, outcomes in order, events for the successes', async () => {
      assert.ok(store.updateMany, 'the backend implements updateMany');
      const p = uniquePrefix();
      const revs: number[] = [];
      for (let i = 0; i < 5; i++) revs.push(await store.create(`${p}${i}`, Buffer.from(`v${i}`)));
      const r2b = await store.update(`${p}2`, Buffer.from('changed'), revs[2] as number);
      const c = collect(store, p, await store.revision());
      try {
        const outcomes = await store.updateMany([
          { key: `${p}0`, value: Buffer.from('n0'), expectedRevision: revs[0] as number },
          { key: `${p}2`, value: Buffer.from('n2'), expectedRevision: revs[2] as number }, // stale
          { key: `${p}missing`, value: Buffer.from('x'), expectedRevision: 1 },
          { key: `${p}4`, value: Buffer.from('n4'), expectedRevision: revs[4] as number },
        ]);
        assert.equal(outcomes.length, 4);
        const [o0, o2, om, o4] = outcomes;
        assert.ok(o0?.ok && o4?.ok, 'the valid updates were applied');
        // New revisions; not necessarily distinct (etcd applies a batch of them in one transaction, at one revision).
        assert.ok(o0.revision > r2b && o4.revision > r2b, 'the updates got revisions after the last write before them');
        assert.ok(o2 && !o2.ok && o2.error instanceof StoreError && o2.error.code === 'CONFLICT' && o2.error.current?.modRevision === r2b);
        assert.ok(om && !om.ok && om.error instanceof StoreError && om.error.code === 'NOT_FOUND');
        assert.deepEqual((await store.get(`${p}0`))?.value, Buffer.from('n0'));
        assert.deepEqual((await store.get(`${p}2`))?.value, Buffer.from('changed'));
        assert.deepEqual((await store.get(`${p}4`))?.value, Buffer.from('n4'));
        await waitFor(() => c.events.length >= 2, 'the two events');
        const expected: Array<[string, number]> = [[`${p}0`, o0.revision], [`${p}4`, o4.revision]];
        expected.sort((x, y) => x[1] - y[1]);
        assert.deepEqual(c.events.map((e) => [keyOf(e), revOf(e)]), expected);
        assert.deepEqual(await store.updateMany([]), []);
      } finally {
        c.close();
      }
    });

    it('ping resolves', async () => {
      await store.ping();
    });

    it('random operation sequences match a model of etcd (lists at past revisions, compaction, watch replay)', async () => {
      await modelProperty(() => store, uniquePrefix, modelRuns);
    });

    // Last: compaction is store-wide.
    it('compaction: old revisions are gone for list and watch, current values stay', async () => {
      assert.ok(store.compact, 'the backend implements compact');
      const p = uniquePrefix();
      const r1 = await store.create(p + 'k', Buffer.from('v1'));
      const r2 = await store.update(p + 'k', Buffer.from('v2'), r1);
      const r3 = await store.update(p + 'k', Buffer.from('v3'), r2);
      await store.create(p + 'gone', Buffer.from('x'));
      await store.delete(p + 'gone');
      const r5 = await store.create(p + 'keep', Buffer.from('kept'));
      await store.compact(r5);
      await store.compact(r1); // older than the compaction point: a no-op, not an error
      assert.deepEqual((await store.get(p + 'k'))?.value, Buffer.from('v3'));
      assert.equal((await store.get(p + 'k'))?.modRevision, r3);
      assert.deepEqual((await store.list(p)).items.map((kv) => kv.key), [p + 'k', p + 'keep']);
      await rejectsWith(store.list(p, { revision: r2 }), 'COMPACTED');
      const old = collect(store, p, r1);
      await waitFor(() => old.errors.length > 0, 'the compaction error');
      assert.equal((old.errors[0] as StoreError).code, 'COMPACTED');
      assert.deepEqual(old.events, []);
      old.close();
      const fresh = collect(store, p, r5);
      try {
        const r6 = await store.update(p + 'k', Buffer.from('v4'), r3);
        await waitFor(() => fresh.events.length >= 1, 'an event after the compaction point');
        assert.deepEqual(fresh.events.map(revOf), [r6]);
        assert.deepEqual(fresh.errors, []);
      } finally {
        fresh.close();
      }
      await rejectsWith(store.compact((await store.revision()) + 100), 'FUTURE_REVISION');
    });
  });
}
