import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StatusLoop } from '../../src/kms/v2-status-loop.js';
import { KmsV2Probe } from '../../src/kms/v2-probe.js';
import { CachedProbe } from '../../src/kms/probe-cache.js';
import { DekSeedStateHolder } from '../../src/transform/kmsv2/state.js';
import { keyIdHash } from '../../src/transform/kmsv2/validation.js';
import { FakeKmsV2 } from '../helpers/fake-kms.js';
import { waitFor } from '../helpers/python-kms-plugin.js';

test('status loop: first probe at start, fast retries after failure, slow polling once healthy', async () => {
  const fake = new FakeKmsV2();
  fake.fail = new Error('not yet');
  const state = new DekSeedStateHolder();
  const probe = new KmsV2Probe('p', fake, state, { positiveMs: 0, negativeMs: 0 }, Date.now);
  const loop = new StatusLoop('p', () => probe.check(), { healthyMs: 3_600_000, unhealthyMs: 10 });
  try {
    await loop.primed;
    assert.equal(fake.calls.status, 1, 'one probe at start');
    assert.equal(state.ready, false);
    await waitFor(() => fake.calls.status >= 4, 'fast retries while failing');
    fake.fail = undefined;
    await waitFor(() => state.ready, 'the state to prime once Status works');
    const settled = fake.calls.status;
    // Healthy: the next poll is an hour away, so the count stays put while we do other work.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.equal(fake.calls.status, settled);
    assert.equal(fake.calls.encrypt, 1);
  } finally {
    loop.stop();
  }
});

test('probe cache: success reused for the positive TTL, failure for the negative TTL, concurrent checks share one probe', async () => {
  let now = 0;
  let calls = 0;
  let fail = false;
  const cached = new CachedProbe(async () => {
    calls++;
    await new Promise((r) => setImmediate(r));
    if (fail) throw new Error('down');
  }, { positiveMs: 20_000, negativeMs: 3_000 }, () => now);
  await Promise.all([cached.check(), cached.check(), cached.check()]);
  assert.equal(calls, 1);
  now = 19_999;
  await cached.check();
  assert.equal(calls, 1);
  now = 20_000;
  fail = true;
  await assert.rejects(cached.check(), { message: 'down' });
  assert.equal(calls, 2);
  now = 22_999;
  fail = false;
  await assert.rejects(cached.check(), { message: 'down' }, 'failure cached for 3 s');
  now = 23_000;
  await cached.check();
  assert.equal(calls, 3);
});

test('probe keyIdHash: the hash of the last valid Status key_id; an invalid one does not replace it', async () => {
  const fake = new FakeKmsV2();
  const probe = new KmsV2Probe('p', fake, new DekSeedStateHolder(), { positiveMs: 0, negativeMs: 0 }, Date.now);
  assert.equal(probe.keyIdHash, undefined, 'none before a Status answer');
  await probe.check();
  assert.equal(probe.keyIdHash, keyIdHash('key-1'));
  fake.keyId = 'key-2';
  await probe.check();
  assert.equal(probe.keyIdHash, keyIdHash('key-2'));
  fake.keyId = '';
  await assert.rejects(probe.check(), /invalid KMSv2 KeyID/);
  assert.equal(probe.keyIdHash, keyIdHash('key-2'), 'the last valid one stays');
});
