// storagemigration.k8s.io/v1beta1 StorageVersionMigration on one in-process `atrest serve` (embedded
// store, aesgcm): discovery (legacy and aggregated), the real kubectl 1.32 (api-resources, create -f,
// get with kube's columns, describe, wait --for=condition=Succeeded, delete), kube's validation
// texts for the main resource and the status subresource, a resource the server does not serve, and
// objects that cannot be decrypted (the migration fails naming them after migrating the others).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PROGRESS_ANNOTATION } from '../../src/k8s-objects/storage-version-migration.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { Store } from '../../src/storage/types.js';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import {
  condition, createMigration, getMigration, keysNotUnder, progressOf, secretJson, seedPlainSecrets, SVM_PATH, waitFinished, type MigrationObject,
} from '../helpers/migrations.js';
import { apiRequest, startTestServer, writeAesGcmConfig, type TestServer } from '../helpers/server.js';

const SECRETS = 300;
const AGGREGATED_ACCEPT = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json';
const VALUE_PREFIX = 'k8s:enc:aesgcm:v1:key1:';

describe('StorageVersionMigration API', { skip: !kubectlAvailable() && 'kubectl is not installed' }, () => {
  let t: TestServer;
  let store: Store;
  let k: Kubectl;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'atrest-svm-api-'));
    store = openSqliteStore(join(dir, 'store.db'));
    await seedPlainSecrets(store, SECRETS);
    const config = writeAesGcmConfig(dir);
    t = await startTestServer({ store, encryptionProviderConfig: config.path, leaderElection: { leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 200 } }, dir);
    k = new Kubectl(t.server.kubeconfigPath);
  });

  after(async () => {
    k?.cleanup();
    await t?.close();
  });

  test('discovery lists the group, its version, the resource and its status subresource (legacy and aggregated)', async () => {
    const groups = (await apiRequest(t.server, 'GET', '/apis')).json<{ groups: Array<{ name: string; versions: unknown[]; preferredVersion: unknown }> }>();
    const group = groups.groups.find((g) => g.name === 'storagemigration.k8s.io');
    assert.deepEqual(group, {
      name: 'storagemigration.k8s.io',
      versions: [{ groupVersion: 'storagemigration.k8s.io/v1beta1', version: 'v1beta1' }],
      preferredVersion: { groupVersion: 'storagemigration.k8s.io/v1beta1', version: 'v1beta1' },
    });
    const one = await apiRequest(t.server, 'GET', '/apis/storagemigration.k8s.io');
    assert.equal(one.json()['kind'], 'APIGroup');
    const list = (await apiRequest(t.server, 'GET', '/apis/storagemigration.k8s.io/v1beta1')).json<{ groupVersion: string; resources: Array<Record<string, unknown>> }>();
    assert.equal(list.groupVersion, 'storagemigration.k8s.io/v1beta1');
    assert.deepEqual(list.resources.map((r) => [r['name'], r['namespaced'], r['kind']]), [
      ['storageversionmigrations', false, 'StorageVersionMigration'],
      ['storageversionmigrations/status', false, 'StorageVersionMigration'],
    ]);
    assert.equal((await apiRequest(t.server, 'GET', '/apis/storagemigration.k8s.io/v1alpha9')).status, 404);
    const aggregated = await apiRequest(t.server, 'GET', '/apis', { headers: { Accept: AGGREGATED_ACCEPT } });
    assert.match(String(aggregated.headers['content-type']), /as=APIGroupDiscoveryList/);
    const items = aggregated.json<{ items: Array<{ metadata: { name: string }; versions: Array<{ version: string; resources: Array<Record<string, unknown>> }> }> }>().items;
    const svm = items.find((i) => i.metadata.name === 'storagemigration.k8s.io')?.versions[0]?.resources[0];
    assert.equal(svm?.['resource'], 'storageversionmigrations');
    assert.equal(svm?.['scope'], 'Cluster');
    assert.deepEqual(svm?.['subresources'], [{ subresource: 'status', responseKind: { group: 'storagemigration.k8s.io', version: 'v1beta1', kind: 'StorageVersionMigration' }, verbs: ['get', 'patch', 'update'] }]);
  });

  test('kubectl: api-resources, create -f, wait for Succeeded, get, describe, delete; every Secret re-encrypted', async () => {
    assert.match(await k.ok(['api-resources', '--api-group=storagemigration.k8s.io']), /\nstorageversionmigrations\s+storagemigration\.k8s\.io\/v1beta1\s+false\s+StorageVersionMigration\n/);
    assert.equal((await keysNotUnder(store, '/registry/secrets/', VALUE_PREFIX)).length, SECRETS, 'every seeded Secret starts stale (plaintext)');
    const manifest = join(dir, 'svm.yaml');
    writeFileSync(manifest, 'apiVersion: storagemigration.k8s.io/v1beta1\nkind: StorageVersionMigration\nmetadata:\n  name: secrets-now\nspec:\n  resource:\n    group: ""\n    resource: secrets\n');
    assert.equal(await k.ok(['create', '-f', manifest]), 'storageversionmigration.storagemigration.k8s.io/secrets-now created\n');
    assert.equal(await k.ok(['wait', '--for=condition=Succeeded', 'storageversionmigration/secrets-now', '--timeout=60s']),
      'storageversionmigration.storagemigration.k8s.io/secrets-now condition met\n');
    assert.deepEqual(await keysNotUnder(store, '/registry/secrets/', VALUE_PREFIX), [], 'every Secret is written by the current write provider');

    assert.match(await k.ok(['get', 'storageversionmigrations']), /^NAME\s+RESOURCE\nsecrets-now\s+secrets\n$/);
    const obj = JSON.parse(await k.ok(['get', 'storageversionmigration', 'secrets-now', '-o', 'json'])) as MigrationObject;
    assert.deepEqual(obj.spec, { resource: { group: '', resource: 'secrets' } });
    assert.match(obj.status.resourceVersion ?? '', /^\d+$/);
    assert.deepEqual(obj.status.conditions?.map((c) => [c.type, c.status, c.reason]), [
      ['Running', 'False', 'StorageVersionMigrationInProgress'],
      ['Succeeded', 'True', 'StorageVersionMigrationSucceeded'],
    ]);
    assert.deepEqual(progressOf(obj), { scanned: SECRETS, rewritten: SECRETS, alreadyCurrent: 0, conflictsRetried: 0, deletedMeanwhile: 0, undecryptable: 0, needsRetiredKey: 0 });
    const described = await k.ok(['describe', 'storageversionmigration', 'secrets-now']);
    assert.match(described, /Name:\s+secrets-now/);
    assert.match(described, /Reason:\s+StorageVersionMigrationSucceeded/);
    assert.match(described, /Message:\s+300 objects scanned: 300 re-encrypted with the current write provider/);

    const metrics = (await apiRequest(t.server, 'GET', '/metrics')).text;
    assert.match(metrics, /atrest_storage_version_migration_objects_total\{resource="secrets",outcome="rewritten"\} 300\n/);
    assert.match(metrics, /atrest_storage_version_migrations_total\{resource="secrets",result="succeeded"\} 1\n/);
    assert.match(metrics, /leader_election_master_status\{name="atrest-storage-version-migrator"\} 1\n/);
    // The lease is a coordination.k8s.io Lease where kube keeps them.
    const lease = await store.get('/registry/leases/kube-system/atrest-storage-version-migrator');
    assert.ok(lease, 'the Lease is stored');
    assert.match(Buffer.from(lease.value).toString('utf8'), /"kind":"Lease","apiVersion":"coordination.k8s.io\/v1".*"holderIdentity":"[^"]+"/);

    assert.equal(await k.ok(['delete', 'storageversionmigration', 'secrets-now']), 'storageversionmigration.storagemigration.k8s.io "secrets-now" deleted\n');
    assert.match(await k.fails(['get', 'storageversionmigration', 'secrets-now']),
      /Error from server \(NotFound\): storageversionmigrations\.storagemigration\.k8s\.io "secrets-now" not found/);
  });

  test('validation and the status subresource, as kube words them', async () => {
    const post = (body: unknown) => apiRequest(t.server, 'POST', SVM_PATH, { body: JSON.stringify(body) });
    const kind = { apiVersion: 'storagemigration.k8s.io/v1beta1', kind: 'StorageVersionMigration' };
    let r = await post({ ...kind, metadata: { name: 'bad' }, spec: { resource: { group: '' } } });
    assert.equal(r.status, 422);
    assert.equal(r.json()['message'], 'StorageVersionMigration.storagemigration.k8s.io "bad" is invalid: spec.resource.resource: Required value: resource is required to be set');
    r = await post({ ...kind, metadata: { name: 'bad' }, spec: { resource: { group: 'Apps_', resource: 'Deployments' } } });
    assert.equal(r.status, 422);
    const causes = r.json<{ details: { causes: Array<{ field: string }> } }>().details.causes.map((c) => c.field);
    assert.deepEqual(causes, ['spec.resource.resource', 'spec.resource.group']);
    r = await post({ ...kind, metadata: { name: 'bad' }, spec: { resource: { resource: 'secrets', version: 'v1' } } });
    assert.equal(r.status, 201, 'an unknown field is dropped with a warning (fieldValidation defaults to Warn)');
    assert.match(String(r.headers['warning']), /unknown field \\"spec.resource.version\\"/);
    r = await apiRequest(t.server, 'POST', `${SVM_PATH}?fieldValidation=Strict`, { body: JSON.stringify({ ...kind, metadata: { name: 'strict' }, spec: { resource: { resource: 'secrets', version: 'v1' } } }) });
    assert.equal(r.status, 400);
    assert.equal(r.json()['message'], 'StorageVersionMigration in version "v1beta1" cannot be handled as a StorageVersionMigration: strict decoding error: unknown field "spec.resource.version"');
    r = await post({ apiVersion: 'storagemigration.k8s.io/v1alpha1', kind: 'StorageVersionMigration', metadata: { name: 'alpha' }, spec: {} });
    assert.equal(r.json()['message'], 'the API version in the data (storagemigration.k8s.io/v1alpha1) does not match the expected API version (storagemigration.k8s.io/v1beta1)');
    r = await post({ ...kind, metadata: { name: 'bad' }, spec: { resource: { resource: 'secrets' } } });
    assert.equal(r.status, 409);
    assert.equal(r.json()['message'], 'storageversionmigrations.storagemigration.k8s.io "bad" already exists');

    // A status sent on create is dropped; the migration runs and succeeds (nothing is stale any more).
    r = await post({ ...kind, metadata: { name: 'with-status', annotations: { [PROGRESS_ANNOTATION]: JSON.stringify({ continue: 'zzz' }) } }, spec: { resource: { resource: 'secrets' } }, status: { resourceVersion: '1', conditions: [{ type: 'Succeeded', status: 'True', reason: 'Fake', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }] } });
    assert.equal(r.status, 201);
    assert.deepEqual(r.json()['status'], {});
    assert.equal(r.json<{ metadata: { annotations?: unknown } }>().metadata.annotations, undefined, 'a client cannot set the resume point');
    const done = await waitFinished(t.server, 'with-status');
    assert.equal(condition(done, 'Succeeded')?.status, 'True');
    assert.equal(progressOf(done)?.alreadyCurrent, SECRETS);

    // The main resource: spec is immutable, a status in the body is ignored.
    const edited = structuredClone(done);
    edited.spec.resource.resource = 'configmaps';
    r = await apiRequest(t.server, 'PUT', `${SVM_PATH}/with-status`, { body: JSON.stringify(edited) });
    assert.equal(r.status, 422);
    assert.equal(r.json()['message'], 'StorageVersionMigration.storagemigration.k8s.io "with-status" is invalid: spec: Invalid value: storagemigration.StorageVersionMigrationSpec{Resource:v1.GroupResource{Group:"", Resource:"configmaps"}}: field is immutable');
    const labelled = structuredClone(done) as MigrationObject & { metadata: { labels?: Record<string, string> } };
    labelled.metadata.labels = { team: 'a' };
    labelled.status = {};
    r = await apiRequest(t.server, 'PUT', `${SVM_PATH}/with-status`, { body: JSON.stringify(labelled) });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json<MigrationObject>().status, done.status, 'an update of the main resource keeps the stored status');
    // The controller's resume point is the controller's alone: a client can neither change nor drop it.
    const forged = structuredClone(r.json<MigrationObject>()) as MigrationObject & { metadata: { annotations?: Record<string, string> } };
    const storedProgress = forged.metadata.annotations?.[PROGRESS_ANNOTATION];
    assert.ok(storedProgress, 'the finished migration carries its progress');
    forged.metadata.annotations = { [PROGRESS_ANNOTATION]: JSON.stringify({ continue: 'zzz', revision: 1 }), team: 'a' };
    r = await apiRequest(t.server, 'PUT', `${SVM_PATH}/with-status`, { body: JSON.stringify(forged) });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json<{ metadata: { annotations?: Record<string, string> } }>().metadata.annotations, { [PROGRESS_ANNOTATION]: storedProgress, team: 'a' });
    r = await apiRequest(t.server, 'PATCH', `${SVM_PATH}/with-status`, {
      body: JSON.stringify({ metadata: { annotations: { [PROGRESS_ANNOTATION]: null } } }), headers: { 'Content-Type': 'application/merge-patch+json' },
    });
    assert.equal(r.status, 200);
    assert.equal(r.json<{ metadata: { annotations?: Record<string, string> } }>().metadata.annotations?.[PROGRESS_ANNOTATION], storedProgress);

    // The status subresource: kube's one-way rules.
    const current = (await getMigration(t.server, 'with-status')) as MigrationObject;
    const undone = structuredClone(current);
    undone.status.conditions = undone.status.conditions?.map((c) => (c.type === 'Succeeded' ? { ...c, status: 'False' } : c));
    r = await apiRequest(t.server, 'PUT', `${SVM_PATH}/with-status/status`, { body: JSON.stringify(undone) });
    assert.equal(r.status, 422);
    assert.match(String(r.json()['message']), /status\.conditions: Invalid value: .*: Success condition cannot be set to false once it is true/);
    r = await apiRequest(t.server, 'PATCH', `${SVM_PATH}/with-status/status`, {
      body: JSON.stringify({ status: { resourceVersion: '12x' } }), headers: { 'Content-Type': 'application/merge-patch+json' },
    });
    assert.equal(r.status, 422);
    assert.match(String(r.json()['message']), /status\.resourceVersion: Invalid value: "12x": failed to parse resource version "12x"/);
    r = await apiRequest(t.server, 'PATCH', `${SVM_PATH}/with-status/status`, {
      body: JSON.stringify({ metadata: { labels: { other: 'b' } }, spec: { resource: { resource: 'configmaps' } } }), headers: { 'Content-Type': 'application/merge-patch+json' },
    });
    assert.equal(r.status, 200, 'the status subresource ignores spec and labels');
    assert.deepEqual(r.json<MigrationObject & { metadata: { labels?: unknown } }>().metadata.labels, { team: 'a' });
    assert.equal(r.json<MigrationObject>().spec.resource.resource, 'secrets');
    assert.equal((await apiRequest(t.server, 'DELETE', `${SVM_PATH}/with-status/status`)).status, 405);
    for (const name of ['bad', 'with-status']) assert.equal((await apiRequest(t.server, 'DELETE', `${SVM_PATH}/${name}`)).status, 200);
  });

  test('a resource this server does not serve fails with kube\'s message', async () => {
    await createMigration(t.server, 'deployments', 'deployments', 'apps');
    const done = await waitFinished(t.server, 'deployments');
    const failed = condition(done, 'Failed');
    assert.deepEqual([failed?.status, failed?.reason, failed?.message],
      ['True', 'StorageVersionMigrationFailed', 'migration encountered unhandled error: unable to obtain GVR from discovery']);
    assert.equal(condition(done, 'Succeeded'), undefined);
  });

  test('objects that cannot be decrypted: the others are re-encrypted, then the migration fails naming their keys', async () => {
    const base = '/registry/configmaps/default/';
    for (let i = 0; i < 20; i++) await store.create(`${base}cm-${i}`, Buffer.from(JSON.stringify({ kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: `cm-${i}`, namespace: 'default' }, data: { a: 'b' } })));
    // Written under the key name of the configuration, with bytes no key opens (a restored backup of another cluster, say).
    await store.create(`${base}cm-lost`, Buffer.concat([Buffer.from(VALUE_PREFIX), randomBytes(64)]));
    await store.create('/registry/secrets/default/extra', secretJson('extra', 'x'));
    await createMigration(t.server, 'configmaps', 'configmaps');
    const done = await waitFinished(t.server, 'configmaps');
    const failed = condition(done, 'Failed');
    assert.equal(failed?.status, 'True');
    assert.equal(failed?.reason, 'StorageVersionMigrationFailed');
    assert.match(failed?.message ?? '', /^migration encountered unhandled error: 1 stored objects of configmaps cannot be decrypted with this server's encryption configuration: \/registry\/configmaps\/default\/cm-lost; restore the key/);
    assert.deepEqual(await keysNotUnder(store, base, VALUE_PREFIX), [], 'every readable ConfigMap was re-encrypted (the unreadable one keeps its bytes)');
    assert.equal(progressOf(done)?.rewritten, 20);
    assert.equal((await keysNotUnder(store, '/registry/secrets/', VALUE_PREFIX)).length, 1, 'a migration of configmaps leaves Secrets alone');
  });
});
