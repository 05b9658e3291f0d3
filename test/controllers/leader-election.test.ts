// Leader election over a coordination.k8s.io/v1 Lease in the embedded store: one of two replicas
// leads; a clean stop releases the Lease and the other takes over at once; a holder that stopped
// renewing (a crash) is taken over only after its lease duration; a leader that cannot renew gives up
// (its work is aborted). Short timings; every wait is bounded and nothing asserts how long it took.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { LeaderElector, type LeaderElectionTimings } from '../../src/controllers/leader-election.js';
import { EncryptedStore } from '../../src/storage/encrypted-store.js';
import { StoreError } from '../../src/storage/errors.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { Store } from '../../src/storage/types.js';
import { IdentityTransformer } from '../../src/transform/identity.js';
import { waitFor } from '../helpers/plugin.js';
import { inProcessLogger } from '../helpers/test-log.js';

const TIMINGS: LeaderElectionTimings = { leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 100 };
const KEY = '/registry/leases/kube-system/test-lease';

let dir: string;
let raw: Store;
let failWrites = false;
let store: EncryptedStore;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'atrest-lease-'));
  raw = openSqliteStore(join(dir, 'store.db'));
  // Writes fail while failWrites is set (the store unreachable for this replica).
  const flaky: Store = Object.create(raw) as Store;
  flaky.update = (key, value, rev) => (failWrites ? Promise.reject(new StoreError('UNAVAILABLE', 'injected outage', { key })) : raw.update(key, value, rev));
  const identity = new IdentityTransformer({ nameStorageKey: true });
  store = new EncryptedStore(flaky, () => identity);
});

after(async () => {
  await raw.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Candidate {
  elector: LeaderElector;
  signals: AbortSignal[];
}

function candidate(identity: string, key = KEY, timings: LeaderElectionTimings = TIMINGS): Candidate {
  const signals: AbortSignal[] = [];
  const elector = new LeaderElector({
    ...timings, store, key, name: key.split('/').at(-1) as string, namespace: 'kube-system', identity,
    log: inProcessLogger('leader-election'), onStartedLeading: (signal) => { signals.push(signal); },
  });
  return { elector, signals };
}

async function lease(key = KEY): Promise<{ holderIdentity: string; leaseTransitions: number; leaseDurationSeconds: number }> {
  const kv = await raw.get(key);
  assert.ok(kv, 'the Lease exists');
  const obj = JSON.parse(Buffer.from(kv.value).toString('utf8')) as { kind: string; apiVersion: string; metadata: { namespace: string }; spec: { holderIdentity: string; leaseTransitions: number; leaseDurationSeconds: number } };
  assert.equal(obj.kind, 'Lease');
  assert.equal(obj.apiVersion, 'coordination.k8s.io/v1');
  assert.equal(obj.metadata.namespace, 'kube-system');
  return obj.spec;
}

test('one of two replicas leads; a clean stop hands the Lease over at once', async () => {
  // A lease far longer than the test: b can only get it because a released it.
  const long: LeaderElectionTimings = { leaseDurationMs: 120_000, renewDeadlineMs: 1000, retryPeriodMs: 100 };
  const a = candidate('replica-a', KEY, long);
  const b = candidate('replica-b', KEY, long);
  a.elector.start();
  await waitFor('a leads', () => a.elector.isLeader);
  b.elector.start();
  // b keeps trying while a renews: several retry periods without b leading.
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, TIMINGS.retryPeriodMs));
    assert.equal(b.elector.isLeader, false, 'b does not lead while a renews');
  }
  assert.equal((await lease()).holderIdentity, 'replica-a');
  await a.elector.stop();
  assert.equal(a.signals[0]?.aborted, true, 'the old leader\'s work was stopped');
  await waitFor('b leads', () => b.elector.isLeader, 10_000);
  const spec = await lease();
  assert.equal(spec.holderIdentity, 'replica-b');
  assert.equal(spec.leaseTransitions, 1);
  assert.equal(spec.leaseDurationSeconds, 120);
  await b.elector.stop();
  assert.equal((await lease()).holderIdentity, '', 'released on stop');
});

test('a holder that stopped renewing (crashed) is taken over after its lease duration', async () => {
  const key = '/registry/leases/kube-system/crash-lease';
  const timings: LeaderElectionTimings = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 100 };
  const dead = candidate('replica-dead', key, timings);
  dead.elector.start();
  await waitFor('the first replica leads', () => dead.elector.isLeader);
  // A crash: it stops renewing and never releases (stop() would release, so freeze its timer instead).
  const frozen = dead.elector as unknown as { stopped: boolean; timer?: NodeJS.Timeout };
  frozen.stopped = true;
  if (frozen.timer) clearTimeout(frozen.timer);
  const next = candidate('replica-next', key, timings);
  next.elector.start();
  await new Promise((r) => setTimeout(r, 3 * TIMINGS.retryPeriodMs));
  assert.equal(next.elector.isLeader, false, 'no takeover while the dead holder\'s lease may still be valid');
  await waitFor('the second replica takes over', () => next.elector.isLeader, 15_000);
  const spec = await lease(key);
  assert.equal(spec.holderIdentity, 'replica-next');
  assert.equal(spec.leaseTransitions, 1);
  await next.elector.stop();
});

test('a leader that cannot renew within the renew deadline stops leading', async () => {
  const key = '/registry/leases/kube-system/outage-lease';
  const c = candidate('replica-cut-off', key);
  c.elector.start();
  await waitFor('it leads', () => c.elector.isLeader);
  failWrites = true;
  try {
    await waitFor('it gives up', () => !c.elector.isLeader, 10_000);
    assert.equal(c.signals[0]?.aborted, true, 'its work was aborted');
  } finally {
    failWrites = false;
  }
  await waitFor('it leads again once the store is back', () => c.elector.isLeader, 10_000);
  assert.equal(c.signals.length, 2);
  await c.elector.stop();
});

test('a stored Lease that cannot be read is overwritten once it has stayed unchanged for the lease duration', async () => {
  const key = '/registry/leases/kube-system/garbled-lease';
  await raw.create(key, Buffer.from('not a lease'));
  const c = candidate('replica-after-garbage', key);
  c.elector.start();
  await waitFor('it takes the unreadable Lease over', () => c.elector.isLeader, 15_000);
  const spec = await lease(key);
  assert.equal(spec.holderIdentity, 'replica-after-garbage');
  await c.elector.stop();
});
