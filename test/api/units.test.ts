// The pure parts of the API layer: protobuf body decoding (real kubectl captures), patches, selectors,
// ages, validation texts, continue tokens, the token file.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseTokenFile, TokenAuthenticator } from '../../src/api/auth.js';
import { decodeContinue, encodeContinue } from '../../src/api/continue-token.js';
import { wantsAggregated } from '../../src/api/discovery.js';
import type { Json, KubeObject } from '../../src/api/objects.js';
import { applyJsonPatch } from '../../src/api/patch/json-patch.js';
import { applyMergePatch } from '../../src/api/patch/json-merge-patch.js';
import { serverSideApply } from '../../src/api/patch/apply.js';
import { trackUpdate } from '../../src/api/patch/managed-fields.js';
import type { ApiError } from '../../src/api/errors.js';
import { applyStrategicMergePatch } from '../../src/api/patch/strategic-merge-patch.js';
import { decodeProtobufObject } from '../../src/api/protobuf.js';
import { parseFieldSelector, parseLabelSelector } from '../../src/api/selectors.js';
import { humanDuration } from '../../src/api/table.js';
import { base64ErrorOffset, validateDataKey, validateObjectName } from '../../src/api/validation.js';

interface Capture { m: string; path: string; ct?: string; body64?: string; hdrs: Record<string, string> }
const captures = readFileSync(new URL('../fixtures/kubectl-captures/scenario_kubectl.requests.jsonl', import.meta.url), 'utf8')
  .split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Capture);

test('protobuf: every captured kubectl 1.32 create body decodes; fields as the spec documents', () => {
  const bodies = captures.filter((c) => c.ct === 'application/vnd.kubernetes.protobuf' && c.body64);
  assert.ok(bodies.length >= 3);
  for (const c of bodies) {
    const obj = decodeProtobufObject(Buffer.from(c.body64 as string, 'base64'));
    assert.ok(obj.metadata.name, `${c.path}: has a name`);
    assert.equal(obj.metadata.creationTimestamp, undefined, 'empty timestamps are dropped');
  }
  const s = decodeProtobufObject(Buffer.from('azhzAAoMCgJ2MRIGU2VjcmV0EiYKGgoCczISABoIbm9zdWNobnMiACoAMgA4AEIAEgYKAWESAWIaABoAIgA=', 'base64'));
  assert.deepEqual(s, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's2', namespace: 'nosuchns' }, data: { a: 'Yg==' } });
  const ns = decodeProtobufObject(Buffer.from('azhzAAoPCgJ2MRIJTmFtZXNwYWNlEhkKEQoBeBIAGgAiACoAMgA4AEIAEgAaAgoAGgAiAA==', 'base64'));
  assert.deepEqual(ns, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
  assert.throws(() => decodeProtobufObject(Buffer.from('k8s\0\x0a\x05')), { httpCode: 400 });
  assert.throws(() => decodeProtobufObject(Buffer.from('{}')), { httpCode: 400 });
});

test('patches: merge (RFC 7386), strategic (finalizers, directives, $patch), JSON patch (RFC 6902)', () => {
  assert.deepEqual(applyMergePatch({ a: 1, b: { c: 2, d: 3 } }, { b: { c: null, e: 4 }, f: [1] }), { a: 1, b: { d: 3, e: 4 }, f: [1] });
  const live = { metadata: { name: 'x', finalizers: ['f1', 'f2'], labels: { a: '1', b: '2' } }, data: { k: 'v' }, spec: { finalizers: ['kubernetes'] } } as Json;
  const p1 = applyStrategicMergePatch(live as never, {
    metadata: { '$setElementOrder/finalizers': ['f3', 'f2'], finalizers: ['f3'], '$deleteFromPrimitiveList/finalizers': ['f1'], labels: { a: null, c: '3' } },
    spec: { finalizers: ['other'] },
  });
  assert.deepEqual(p1, { metadata: { name: 'x', finalizers: ['f3', 'f2'], labels: { b: '2', c: '3' } }, data: { k: 'v' }, spec: { finalizers: ['other'] } });
  assert.deepEqual(applyStrategicMergePatch(live as never, { data: { $patch: 'replace', n: 'm' } })['data'], { n: 'm' });
  assert.deepEqual(applyStrategicMergePatch({ metadata: { ownerReferences: [{ uid: '1', name: 'a' }, { uid: '2', name: 'b' }] } }, { metadata: { ownerReferences: [{ uid: '2', name: 'B' }, { uid: '1', $patch: 'delete' }] } }),
    { metadata: { ownerReferences: [{ uid: '2', name: 'B' }] } });
  assert.deepEqual(applyJsonPatch({ a: { b: [1, 2] } }, [
    { op: 'add', path: '/a/b/-', value: 3 }, { op: 'replace', path: '/a/b/0', value: 0 }, { op: 'copy', from: '/a/b', path: '/c' },
    { op: 'move', from: '/c', path: '/d' }, { op: 'remove', path: '/a/b/1' }, { op: 'test', path: '/d/2', value: 3 },
    { op: 'add', path: '/e~1f', value: true },
  ]), { a: { b: [0, 3] }, d: [0, 2, 3], 'e/f': true });
  assert.throws(() => applyJsonPatch({ a: 1 }, [{ op: 'test', path: '/a', value: 2 }]), { httpCode: 422 });
  assert.throws(() => applyJsonPatch({ a: 1 }, [{ op: 'remove', path: '/nope' }]), { httpCode: 422 });
});

test('server-side apply: merges over live, removes what the same manager stopped applying, keeps others\' fields', () => {
  const now = '2026-01-01T00:00:00Z';
  const obj = (data: Record<string, string>): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data });
  let live = serverSideApply(undefined, obj({ a: '1', b: '2' }), 'm1', now);
  live = serverSideApply(live, obj({ z: '9' }), 'm2', now);
  live = serverSideApply(live, obj({ a: '1' }), 'm1', now);
  assert.deepEqual(live['data'], { a: '1', z: '9' });
  assert.deepEqual(live.metadata.managedFields?.map((m) => m['manager']), ['m1', 'm2']);
  assert.deepEqual(live.metadata.managedFields?.[0]?.['fieldsV1'], { 'f:data': { 'f:a': {} } });

  // Ownership from an Update (kubectl create), then conflicts for a different value, sharing for the same.
  const created = obj({ mykey: 'eA==', other: 'bw==' });
  trackUpdate(undefined, created, 'kubectl-create', now);
  assert.deepEqual(created.metadata.managedFields?.[0], { manager: 'kubectl-create', operation: 'Update', apiVersion: 'v1', time: now, fieldsType: 'FieldsV1', fieldsV1: { 'f:data': { 'f:mykey': {}, 'f:other': {} } } });
  assert.throws(() => serverSideApply(created, obj({ mykey: 'eQ==' }), 'kubectl', now), (err: ApiError) =>
    err.httpCode === 409 && err.message === 'Apply failed with 1 conflict: conflict with "kubectl-create" using v1: .data.mykey' &&
    err.details?.causes?.[0]?.reason === 'FieldManagerConflict' && err.details.causes[0].field === '.data.mykey');
  const shared = serverSideApply(created, obj({ mykey: 'eA==' }), 'kubectl', now);
  assert.deepEqual(shared.metadata.managedFields?.map((m) => m['manager']), ['kubectl-create', 'kubectl']);
  const forced = serverSideApply(created, obj({ mykey: 'eQ==' }), 'kubectl', now, true);
  assert.deepEqual(forced['data'], { mykey: 'eQ==', other: 'bw==' });
  assert.deepEqual(forced.metadata.managedFields?.[0]?.['fieldsV1'], { 'f:data': { 'f:other': {} } }, 'force takes the field from its owner');

  // An Update that changes a field takes it; removing a field drops it from everyone.
  const next = structuredClone(forced);
  next['data'] = { mykey: 'eg==' };
  trackUpdate(forced, next, 'kubectl-edit', now);
  assert.deepEqual(next.metadata.managedFields?.map((m) => [m['manager'], m['fieldsV1']]), [['kubectl-edit', { 'f:data': { 'f:mykey': {} } }]]);
});

test('selectors, ages, validation texts', () => {
  const o = (labels: Record<string, string>, name = 'n', namespace = 'ns'): KubeObject => ({ metadata: { name, namespace, labels } });
  const sel = parseLabelSelector('app=demo,tier!=db,env in (a, b),!legacy,owner');
  assert.equal(sel(o({ app: 'demo', env: 'a', owner: 'x' })), true);
  assert.equal(sel(o({ app: 'demo', env: 'c', owner: 'x' })), false);
  assert.equal(sel(o({ app: 'demo', env: 'a', owner: 'x', legacy: '' })), false);
  assert.equal(parseLabelSelector('k notin (x)')(o({ k: 'y' })), true);
  assert.throws(() => parseLabelSelector('a=(b'), { httpCode: 400 });
  assert.equal(parseFieldSelector('metadata.name=n,metadata.namespace!=other', 'Secret')(o({})), true);
  assert.throws(() => parseFieldSelector('spec.x=1', 'Secret'), { httpCode: 400 });

  const s = 1000;
  assert.deepEqual([5, 119, 150, 600, 3 * 3600 + 300, 30 * 3600, 50 * 3600, 400 * 86400, 800 * 86400, -5].map((x) => humanDuration(x * s)),
    ['5s', '119s', '2m30s', '10m', '3h5m', '30h', '2d2h', '400d', '2y70d', '<invalid>']);

  assert.deepEqual(validateObjectName('ok.name-1', undefined, 'subdomain'), []);
  assert.equal(validateObjectName('a.b', undefined, 'label')[0]?.field, 'metadata.name');
  assert.match(validateObjectName('Bad_Name', undefined, 'subdomain')[0]?.message ?? '', /^Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of/);
  assert.deepEqual(validateDataKey('data', 'key.name_1-x'), []);
  assert.equal(validateDataKey('data', '..').length, 1);
  assert.equal(base64ErrorOffset('bXlkYXRh'), -1);
  assert.equal(base64ErrorOffset('bXl!YXRh'), 3);
  assert.ok(base64ErrorOffset('abc') >= 0);
});

test('continue tokens, aggregated Accept, token file', () => {
  const t = encodeContinue({ revision: 42, after: 'ns/name' });
  assert.deepEqual(decodeContinue(t), { revision: 42, after: 'ns/name' });
  assert.throws(() => decodeContinue('garbage'), { httpCode: 400 });
  assert.throws(() => decodeContinue(Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv: 1, start: '../x' })).toString('base64url')), { httpCode: 400 });
  assert.equal(wantsAggregated('application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json'), true);
  assert.equal(wantsAggregated('application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json'), false);

  const entries = parseTokenFile('# c\n\ntok1,alice,1,"g1,g2"\ntok2,bob,2\n', 'f');
  assert.deepEqual(entries.map((e) => [e.name, e.groups]), [['alice', ['g1', 'g2']], ['bob', []]]);
  const auth = new TokenAuthenticator(entries);
  assert.equal(auth.authenticate('Bearer tok2')?.name, 'bob');
  assert.equal(auth.authenticate('Bearer tok3'), undefined);
  assert.equal(auth.authenticate('Basic tok1'), undefined);
  assert.throws(() => parseTokenFile('only-a-token\n', 'f'), (err: Error) => /line 1/.test(err.message) && !err.message.includes('only-a-token'));
});
