import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KmsV1Probe } from '../../src/kms/v1-probe.js';
import { combinedHealthCheck } from '../../src/kms/v2-probe.js';
import { createKmsProviders } from '../../src/kms/factory.js';
import { FakeKmsV1 } from '../helpers/fake-kms.js';

test('v1 probe: decrypt section failure text; the combined check aggregates failures by check name', async () => {
  const service = new FakeKmsV1();
  service.decrypt = async () => { throw new Error('rpc error: code = Internal desc = nope'); };
  const probe = new KmsV1Probe('vault', service, { positiveMs: 0, negativeMs: 0 }, Date.now);
  await assert.rejects(probe.check(), { message: 'kms v1 provider "vault": failed to perform decrypt section of the healthz check for KMS Provider vault, error: rpc error: code = Internal desc = nope' });
  const ok = { name: 'kms-provider-1', check: async () => {} };
  const bad = (n: number) => ({ name: `kms-provider-${n}`, check: async () => { throw new Error(`down ${n}`); } });
  await combinedHealthCheck([ok]).check();
  await combinedHealthCheck([]).check();
  await assert.rejects(combinedHealthCheck([bad(0), ok]).check(), { message: 'kms-provider-0: down 0' });
  await assert.rejects(combinedHealthCheck([bad(0), ok, bad(2)]).check(), { message: '[kms-provider-0: down 0, kms-provider-2: down 2]' });
});

test('close grace period is 2 × the kms timeouts, v1 counted twice', async () => {
  const kms = createKmsProviders();
  try {
    kms.factory({ apiVersion: 'v1', name: 'a', endpoint: 'unix:///nonexistent/a.sock', cachesize: 10, timeoutMs: 3000 }, 0);
    kms.factory({ apiVersion: 'v2', name: 'b', endpoint: 'unix:///nonexistent/b.sock', timeoutMs: 1000 }, 1);
    assert.equal(kms.closeGracePeriodMs(), 2 * (2 * 3000 + 1000));
    assert.deepEqual(kms.healthChecks().map((c) => c.name), ['kms-provider-0', 'kms-provider-1']);
  } finally {
    await kms.close();
  }
});
