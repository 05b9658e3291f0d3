// `atrest rotate` on 10,000 Secrets in etcd while a client keeps writing through the API server:
// the rotate process is killed (SIGKILL) right after it created the StorageVersionMigration, run
// again, and must finish: 0 values left under the old key_id, 0 acknowledged client writes lost, 0
// client requests failed. Prints `ROTATE {json}` with the wall times (seed, first run, rerun).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { localBackend } from '../../src/plugin/backends/local.js';
import { verifyStore } from '../../src/tools/verify.js';
import { keyIdHash } from '../../src/transform/kmsv2/validation.js';
import { etcdAvailable } from '../helpers/etcd.js';
import { waitFor } from '../helpers/plugin.js';
import { apiRequest } from '../helpers/server.js';
import { inProcessLogger } from '../helpers/test-log.js';
import { WriteReadLoad } from '../reliability/load.js';
import { kmsTransformers, PREFIX, secretJson, startRotateWorld, type RotateWorld } from './rotate-fixture.js';

const TOTAL = 10_000;
/** Seeded objects the writer keeps updating (4 workers × 25), the rest untouched. */
const WORKERS = 4;
const PER_WORKER = 25;
const ctx = { log: inProcessLogger('rotate-test') };
const seconds = (since: number): number => Math.round((performance.now() - since) / 100) / 10;

describe('atrest rotate on 10,000 secrets under a steady writer', { skip: !etcdAvailable() && 'needs etcd' }, () => {
  let w: RotateWorld;
  let load: WriteReadLoad | undefined;
  const timings: Record<string, number> = {};

  before(async () => {
    // Small migration batches at a bounded rate, so that the migration is still running when the tool is killed.
    w = await startRotateWorld({ prefix: 'atrest-rotate-10k-', apiOptions: { storageVersionMigration: { batchSize: 200, rate: 4000 } } });
    const started = performance.now();
    const { store, close } = await kmsTransformers(w.configPath);
    const encrypted = store(await w.store());
    const names = [
      ...Array.from({ length: WORKERS * PER_WORKER }, (_, i) => `load-w${Math.floor(i / PER_WORKER)}-${i % PER_WORKER}`),
      ...Array.from({ length: TOTAL - WORKERS * PER_WORKER }, (_, i) => `bulk-${String(i).padStart(5, '0')}`),
    ];
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next < names.length) {
        const name = names[next++]!;
        // The writer's value format (`<name>#<n>`), so its read-back check knows the seeded value.
        await encrypted.create(`${PREFIX}/secrets/default/${name}`, secretJson(name, name.startsWith('load-') ? `${name}#seed` : `seeded ${name}`));
      }
    }));
    await close();
    timings['seedSeconds'] = seconds(started);
  });

  after(async () => {
    await load?.stop();
    await w?.close();
    console.log(`ROTATE ${JSON.stringify({ secrets: TOTAL, ...timings })}`);
  });

  it('finishes after a SIGKILL mid-way: nothing left under the old key, no client write lost or failed', async () => {
    const [v1] = await localBackend.listKeys!({ keyFile: w.keyFile }, ctx);
    load = new WriteReadLoad({ servers: [w.api], workers: WORKERS, objectsPerWorker: PER_WORKER, prefix: 'load', objectsExist: true, pauseMs: 5 });

    let started = performance.now();
    const first = w.spawnRotate();
    await waitFor('the first run to create its StorageVersionMigration', () => /created StorageVersionMigration/.test(first.stderr()) || undefined, 120_000, 20);
    first.child.kill('SIGKILL');
    const killed = await first.done;
    timings['firstRunSeconds'] = seconds(started);
    assert.equal(killed.code, null, 'killed');
    assert.deepEqual((await localBackend.listKeys!({ keyFile: w.keyFile }, ctx)).map((v) => v.state), ['active', 'current'], 'nothing retired yet');

    started = performance.now();
    const rerun = await w.rotate();
    timings['rerunSeconds'] = seconds(started);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stderr, /a rotation is in progress: local:v1:\S+ still active/);
    assert.match(rerun.stderr, /is running already \(an earlier run\): waiting for it|no value is under an old key_id: nothing to migrate/);
    assert.doesNotMatch(rerun.stderr, /creating it again/);
    assert.match(rerun.stdout, new RegExp(`^rotation complete: current KEK version local:v2:\\S+; retired ${v1!.keyId}\\n$`));

    await load.stop();
    const writes = load.events.filter((e) => e.kind === 'write');
    const failed = load.events.filter((e) => !e.ok);
    const { lost, checked } = await load.verify(w.api);
    timings['clientWrites'] = writes.length;
    assert.ok(load.acked > 100, `the writer kept writing (${load.acked} acknowledged writes)`);
    assert.deepEqual(failed.map((e) => `${e.kind} ${e.status} ${e.message ?? ''}`), [], 'no client request failed');
    assert.deepEqual(lost, [], `${checked} objects checked`);

    // Every stored secret is under the new key_id, and untouched ones still hold their value.
    const [, v2] = await localBackend.listKeys!({ keyFile: w.keyFile }, ctx);
    const t = await kmsTransformers(w.configPath);
    try {
      const report = await verifyStore({ store: await w.store(), transformers: t.transformers, etcdPrefix: PREFIX, selects: (gr) => gr.resource === 'secrets' });
      const secrets = report.resources.find((r) => r.resource === 'secrets');
      assert.deepEqual(secrets?.writers, { [`kms v2:atrest:${keyIdHash(v2!.keyId)}`]: TOTAL });
      assert.equal(secrets?.undecryptable.length, 0);
    } finally {
      await t.close();
    }
    for (const name of ['bulk-00000', 'bulk-04321', 'bulk-09899']) {
      const r = await apiRequest(w.api, 'GET', `/api/v1/namespaces/default/secrets/${name}`);
      assert.equal(Buffer.from(r.json<{ data: { v: string } }>().data.v, 'base64').toString(), `seeded ${name}`);
    }
  });
});
