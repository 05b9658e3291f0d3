// Issue #14: three `atrest serve` processes on a 3-member etcd cluster, one shared --data-dir (the
// PKI and token, generated once though all three start at once), each with its own `atrest
// kms-plugin` (one shared KEK file) and so its own kms v2 DEK seed. Checked: what one replica writes
// the others read, list, watch and update (real kubectl, one kubeconfig with --server per replica);
// concurrent updates of one object through different replicas: one winner per revision, 409 for the
// rest; a watch on B sees every event of writes through A and C in revision order with no gap and no
// duplicate, across B's own restart (resume from resourceVersion), and 410 Expired once etcd has
// compacted the revision.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { EncryptedObjectSchema } from '../../src/gen/kmsv2/encrypted_object_pb.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import { makeTempDir, waitFor } from '../helpers/plugin.js';
import { etcdHistory, REPLICA_KMS_NAME, ResumingWatch, startReplicas, waitReady, type ReplicaSet } from '../helpers/replicas.js';
import { apiRequest } from '../helpers/server.js';
import { etcdctlValues } from '../helpers/task-page.js';
import { registerTestSecret } from '../helpers/test-log.js';
import { secretBody, valueOf } from '../reliability/load.js';

const execFileP = promisify(execFile);
const skip = (!etcdAvailable() && 'needs etcd') || (!kubectlAvailable() && 'needs kubectl') || (!existsSync(join(process.cwd(), 'dist')) && process.env['CI'] !== 'true' && 'needs npm run build');
const KMS_PREFIX = `k8s:enc:kms:v2:${REPLICA_KMS_NAME}:`;

describe('three atrest serve replicas on one etcd cluster', { skip, timeout: 240_000 }, () => {
  let etcd: EtcdCluster;
  let set: ReplicaSet;
  let tmp: { dir: string; cleanup: () => Promise<void> };
  let kubectl: Kubectl;

  before(async () => {
    tmp = await makeTempDir('atrest-replicas-');
    etcd = await startEtcdCluster(3);
    set = await startReplicas(etcd, tmp.dir);
    kubectl = new Kubectl(join(set.dataDir, 'admin.kubeconfig'));
  });

  after(async () => {
    kubectl?.cleanup();
    await set?.stop();
    await etcd?.cleanup();
    await tmp?.cleanup();
  });

  test('what one replica writes the others read, list, watch and update (kubectl --server per replica)', async () => {
    const [a, b, c] = set.replicas as [typeof set.replicas[0], typeof set.replicas[0], typeof set.replicas[0]];
    const k = (r: typeof a, args: string[]): Promise<string> => kubectl.ok(['--server', r.client.url, ...args]);
    await k(a, ['create', 'namespace', 'crud']);
    const written = (name: string): string => `written through replica ${name}`;
    for (const r of set.replicas) {
      registerTestSecret(written(r.name));
      await k(r, ['-n', 'crud', 'create', 'secret', 'generic', `s-${r.name}`, `--from-literal=k=${written(r.name)}`]);
    }
    // Every replica reads every value, whichever replica (and DEK seed) wrote it.
    for (const reader of set.replicas) {
      for (const writer of set.replicas) {
        const b64 = await k(reader, ['-n', 'crud', 'get', 'secret', `s-${writer.name}`, '-o', 'jsonpath={.data.k}']);
        assert.equal(Buffer.from(b64, 'base64').toString(), written(writer.name), `${reader.name} reads what ${writer.name} wrote`);
      }
      const names = (await k(reader, ['-n', 'crud', 'get', 'secrets', '-o', 'name'])).trim().split('\n').sort();
      assert.deepEqual(names, ['secret/s-a', 'secret/s-b', 'secret/s-c'], `${reader.name} lists all three`);
    }

    // At rest: kms v2 under the shared provider name, and three different DEK seeds (one per replica).
    const raw = await etcdctlValues(etcd.endpoints[0] as string, '/registry/secrets/crud/');
    const seeds = new Set<string>();
    for (const [key, value] of raw) {
      assert.ok(value.subarray(0, KMS_PREFIX.length).toString() === KMS_PREFIX, `${key} is stored kms v2`);
      seeds.add(Buffer.from(fromBinary(EncryptedObjectSchema, value.subarray(KMS_PREFIX.length)).encryptedDEKSource).toString('base64'));
    }
    assert.equal(raw.size, 3);
    assert.equal(seeds.size, 3, 'each replica encrypts with its own DEK seed');

    // A watch on B sees the update made through C and the delete made through A.
    // (kubectl's `-o json` of a list is its own List without a resourceVersion: ask B directly.)
    const listRv = Number((await apiRequest(b.api, 'GET', '/api/v1/namespaces/crud/secrets')).json<{ metadata: { resourceVersion: string } }>().metadata.resourceVersion);
    assert.ok(listRv > 0);
    const watch = new ResumingWatch(() => b.client, '/api/v1/namespaces/crud/secrets', listRv);
    try {
      registerTestSecret('updated through replica c');
      const patched = JSON.parse(await k(c, ['-n', 'crud', 'patch', 'secret', 's-a', '--type=merge', '-p', JSON.stringify({ data: { k: Buffer.from('updated through replica c').toString('base64') } }), '-o', 'json'])) as { metadata: { resourceVersion: string } };
      await k(a, ['-n', 'crud', 'delete', 'secret', 's-c']);
      const events = await waitFor('B to see both events', () => (watch.events.length >= 2 ? watch.events.slice() : undefined), 20_000);
      assert.deepEqual(events.map((e) => [e.type, e.name]), [['MODIFIED', 's-a'], ['DELETED', 's-c']]);
      assert.equal(events[0]?.rv, Number(patched.metadata.resourceVersion), 'the MODIFIED event carries the revision C answered with');
    } finally {
      await watch.stop();
    }
    for (const reader of set.replicas) {
      assert.equal(Buffer.from(await k(reader, ['-n', 'crud', 'get', 'secret', 's-a', '-o', 'jsonpath={.data.k}']), 'base64').toString(), 'updated through replica c');
      const r = await kubectl.run(['--server', reader.client.url, '-n', 'crud', 'get', 'secret', 's-c']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /NotFound|not found/);
    }
  });

  test('concurrent updates of one object through different replicas: exactly one winner per revision, 409 Conflict for the others', async () => {
    const [a] = set.replicas;
    const created = await apiRequest(a!.api, 'POST', '/api/v1/namespaces/default/secrets', { body: secretBody('contended', 'v0') });
    assert.equal(created.status, 201, created.text);
    let rv = created.json<{ metadata: { resourceVersion: string } }>().metadata.resourceVersion;
    const ROUNDS = 8;
    const PER_REPLICA = 2;
    let conflicts = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      const attempts = set.replicas.flatMap((r) => Array.from({ length: PER_REPLICA }, (_, i) => ({ r, value: `round${round}-${r.name}${i}` })));
      const results = await Promise.all(attempts.map(async ({ r, value }) => {
        const body = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'contended', resourceVersion: rv }, data: { v: Buffer.from(value).toString('base64') } });
        return { value, res: await apiRequest(r.api, 'PUT', '/api/v1/namespaces/default/secrets/contended', { body }) };
      }));
      const winners = results.filter((x) => x.res.status === 200);
      const losers = results.filter((x) => x.res.status !== 200);
      assert.equal(winners.length, 1, `round ${round}: one winner, got ${results.map((x) => x.res.status).join(',')}`);
      for (const l of losers) {
        assert.equal(l.res.status, 409, l.res.text);
        const status = l.res.json<{ reason: string; message: string }>();
        assert.equal(status.reason, 'Conflict');
        assert.match(status.message, /the object has been modified; please apply your changes to the latest version and try again/);
        conflicts++;
      }
      const winner = winners[0]!;
      const newRv = winner.res.json<{ metadata: { resourceVersion: string } }>().metadata.resourceVersion;
      assert.ok(Number(newRv) > Number(rv));
      // Every replica now reads the winner's value at the winner's revision.
      for (const r of set.replicas) {
        const got = await apiRequest(r.api, 'GET', '/api/v1/namespaces/default/secrets/contended');
        assert.equal(valueOf(got), winner.value);
        assert.equal(got.json<{ metadata: { resourceVersion: string } }>().metadata.resourceVersion, newRv);
      }
      rv = newRv;
    }
    assert.equal(conflicts, ROUNDS * (set.replicas.length * PER_REPLICA - 1));
  });

  test('a watch on B sees every write through A and C in revision order, no gap, no duplicate, across B\'s restart; 410 Expired after compaction', async () => {
    const [a, b, c] = set.replicas as [typeof set.replicas[0], typeof set.replicas[0], typeof set.replicas[0]];
    const ns = await apiRequest(a.api, 'POST', '/api/v1/namespaces', { body: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'watched' } }) });
    assert.equal(ns.status, 201, ns.text);
    const path = '/api/v1/namespaces/watched/secrets';
    const startRv = Number(ns.json<{ metadata: { resourceVersion: string } }>().metadata.resourceVersion);
    const watch = new ResumingWatch(() => b.client, path, startRv);
    const writers = [a, c];
    let n = 0;
    const write = async (): Promise<void> => {
      const w = writers[n % 2]!;
      const name = `w${n % 7}`;
      // Create, update a few times, delete, create again: every event type, from both writers.
      const cur = await apiRequest(w.api, 'GET', `${path}/${name}`);
      let r;
      if (cur.status === 404) r = await apiRequest(w.api, 'POST', path, { body: secretBody(name, `v${n}`) });
      else if (n % 5 === 4) r = await apiRequest(w.api, 'DELETE', `${path}/${name}`);
      else r = await apiRequest(w.api, 'PUT', `${path}/${name}`, { body: secretBody(name, `v${n}`) });
      assert.ok(r.status === 200 || r.status === 201, `${r.status} ${r.text}`);
      n++;
    };
    try {
      for (let i = 0; i < 20; i++) await write();
      await waitFor('the watch to start receiving', () => watch.events.length > 0, 20_000);
      // B crashes; writes through A and C go on meanwhile; B comes back on the same port.
      await b.kill();
      for (let i = 0; i < 20; i++) await write();
      await b.start();
      await waitReady(b);
      for (let i = 0; i < 20; i++) await write();
      // A fence write: once B's watch has it, it has had its chance to see everything before it.
      const fence = await apiRequest(a.api, 'POST', path, { body: secretBody('fence', 'f') });
      assert.equal(fence.status, 201, fence.text);
      const fenceRv = Number(fence.json<{ metadata: { resourceVersion: string } }>().metadata.resourceVersion);
      await waitFor('B\'s watch to reach the fence', () => watch.lastRv >= fenceRv, 30_000);
      assert.ok(watch.reconnects >= 1, 'the watch was broken by the restart and resumed');
      const truth = await etcdHistory(etcd.endpoints, '/registry/secrets/watched/', startRv, fenceRv);
      assert.equal(truth.length, n + 1);
      const seen = watch.events.filter((e) => e.rv <= fenceRv);
      const revs = seen.map((e) => e.rv);
      assert.deepEqual(revs, [...revs].sort((x, y) => x - y), 'revision order');
      assert.equal(new Set(revs).size, revs.length, 'no duplicate');
      assert.deepEqual(seen, truth, 'exactly the events etcd recorded: no gap, no duplicate, same types');
      assert.equal(watch.error, undefined);
    } finally {
      await watch.stop();
    }

    // Compact etcd past the start: a watch from there is 410 Expired, as kube answers it.
    const rev = Number(JSON.parse((await execFileP('etcdctl', [`--endpoints=${etcd.endpoints.join(',')}`, 'endpoint', 'status', '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } })).stdout)[0].Status.header.revision);
    await execFileP('etcdctl', [`--endpoints=${etcd.endpoints.join(',')}`, 'compact', String(rev)], { env: { ...process.env, ETCDCTL_API: '3' } });
    for (const r of [b, c]) {
      const expired = new ResumingWatch(() => r.client, path, startRv);
      try {
        await waitFor(`${r.name} to answer the compacted watch`, () => expired.error, 20_000);
        assert.equal(expired.error?.code, 410);
        assert.equal(expired.error?.reason, 'Expired');
        assert.equal(expired.error?.message, `too old resource version: ${startRv} (${rev})`);
      } finally {
        await expired.stop();
      }
    }
  });
});
