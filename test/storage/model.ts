// A property test shared by both backends: random sequences of writes, reads, paged lists at past
// revisions and compactions, checked against a plain in-memory model of etcd's semantics; at the
// end a watch from the compaction point must replay exactly the model's events.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { StoreError } from '../../src/storage/errors.js';
import type { KeyValue, Store } from '../../src/storage/types.js';

type Op =
  | { kind: 'create'; key: number; value: Uint8Array }
  | { kind: 'update'; key: number; value: Uint8Array; stale: boolean }
  | { kind: 'delete'; key: number; mode: 'any' | 'current' | 'stale' }
  | { kind: 'get'; key: number }
  | { kind: 'list'; back: number; limit: number }
  | { kind: 'compact'; back: number };

const KEYS = ['a', 'b', 'b0', 'c/x', 'c/y', '\u00e9'];

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('create' as const), key: fc.nat(KEYS.length - 1), value: fc.uint8Array({ maxLength: 24 }) }),
  fc.record({ kind: fc.constant('update' as const), key: fc.nat(KEYS.length - 1), value: fc.uint8Array({ maxLength: 24 }), stale: fc.boolean() }),
  fc.record({ kind: fc.constant('delete' as const), key: fc.nat(KEYS.length - 1), mode: fc.constantFrom('any' as const, 'current' as const, 'stale' as const) }),
  fc.record({ kind: fc.constant('get' as const), key: fc.nat(KEYS.length - 1) }),
  fc.record({ kind: fc.constant('list' as const), back: fc.nat(6), limit: fc.nat(3) }),
  fc.record({ kind: fc.constant('compact' as const), back: fc.nat(6) }),
);

type State = Map<string, KeyValue>;
type ModelEvent = { type: 'put' | 'delete'; key: string; rev: number };

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (err instanceof StoreError) return err.code;
    throw err;
  }
}

function sortedItems(state: State, prefix: string): KeyValue[] {
  return [...state.values()]
    .filter((kv) => kv.key.startsWith(prefix))
    .sort((x, y) => Buffer.compare(Buffer.from(x.key), Buffer.from(y.key)));
}

export async function runModel(store: Store, prefix: string, ops: Op[]): Promise<void> {
  const state: State = new Map();
  const history: Array<{ rev: number; state: State }> = [{ rev: await store.revision(), state: new Map() }];
  const events: ModelEvent[] = [];
  let compacted = history[0]?.rev ?? 0;
  const record = (rev: number) => {
    assert.ok(rev > (history[history.length - 1] as { rev: number }).rev, 'revisions increase');
    history.push({ rev, state: new Map(state) });
  };
  for (const op of ops) {
    if (op.kind === 'compact' || op.kind === 'list') {
      const idx = Math.max(0, history.length - 1 - op.back);
      const at = history[idx] as { rev: number; state: State };
      if (op.kind === 'compact') {
        if (at.rev > compacted) {
          await store.compact?.(at.rev);
          compacted = at.rev;
        }
        continue;
      }
      if (at.rev === 0) continue; // revision 0 means "the current revision" to list
      if (at.rev < compacted) {
        assert.equal(await code(store.list(prefix, { revision: at.rev })), 'COMPACTED');
        continue;
      }
      const got: KeyValue[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.list(prefix, { revision: at.rev, after, limit: op.limit });
        assert.equal(page.revision, at.rev);
        got.push(...page.items);
        if (!page.more) break;
        after = page.items[page.items.length - 1]?.key;
      }
      assert.deepEqual(got, sortedItems(at.state, prefix), `list at revision ${at.rev}`);
      continue;
    }
    const key = prefix + KEYS[op.key];
    const cur = state.get(key);
    switch (op.kind) {
      case 'get':
        assert.deepEqual(await store.get(key), cur);
        break;
      case 'create': {
        if (cur) {
          assert.equal(await code(store.create(key, op.value)), 'KEY_EXISTS');
          break;
        }
        const rev = await store.create(key, op.value);
        state.set(key, { key, value: Buffer.from(op.value), modRevision: rev, createRevision: rev });
        events.push({ type: 'put', key, rev });
        record(rev);
        break;
      }
      case 'update': {
        if (!cur) {
          assert.equal(await code(store.update(key, op.value, 1)), 'NOT_FOUND');
          break;
        }
        if (op.stale) {
          const err = await store.update(key, op.value, cur.modRevision - 1).catch((e: unknown) => e);
          assert.ok(err instanceof StoreError && err.code === 'CONFLICT');
          assert.deepEqual(err.current, cur);
          break;
        }
        const rev = await store.update(key, op.value, cur.modRevision);
        state.set(key, { key, value: Buffer.from(op.value), modRevision: rev, createRevision: cur.createRevision });
        events.push({ type: 'put', key, rev });
        record(rev);
        break;
      }
      case 'delete': {
        if (op.mode === 'stale' && cur) {
          assert.equal(await code(store.delete(key, cur.modRevision - 1)), 'CONFLICT');
          break;
        }
        const deleted = await store.delete(key, op.mode === 'current' ? cur?.modRevision : undefined);
        assert.deepEqual(deleted, cur);
        if (cur) {
          state.delete(key);
          const rev = await store.revision();
          events.push({ type: 'delete', key, rev });
          record(rev);
        }
        break;
      }
    }
  }
  // Replaying from the compaction point gives exactly the model's later events.
  const expected = events.filter((e) => e.rev > compacted);
  const seen: ModelEvent[] = [];
  const errors: Error[] = [];
  const w = store.watch(prefix, {
    afterRevision: compacted,
    onEvent: (e) => seen.push(e.type === 'put' ? { type: 'put', key: e.kv.key, rev: e.kv.modRevision } : { type: 'delete', key: e.key, rev: e.modRevision }),
    onError: (e) => errors.push(e),
  });
  try {
    const deadline = Date.now() + 10_000;
    while (seen.length < expected.length && errors.length === 0) {
      assert.ok(Date.now() < deadline, `watch replay: ${seen.length} of ${expected.length} events`);
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(errors, []);
    assert.deepEqual(seen, expected);
  } finally {
    w.close();
  }
}

export function modelProperty(store: () => Store, prefix: () => string, numRuns: number): Promise<void> {
  return fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => runModel(store(), prefix(), ops)),
    { numRuns },
  );
}
