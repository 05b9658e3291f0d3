// The task page's kubectl workflows, run by the real kubectl 1.32 against one `atrest serve`: shared
// by the embedded-store and etcd test files (each gives its server and a raw view of its store).
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { RunningApiServer } from '../../src/api/index.js';
import { Kubectl } from '../helpers/kubectl.js';

export interface WorkflowTarget {
  server: RunningApiServer;
  /** A scratch directory for files (manifests, the EDITOR script). */
  dir: string;
  etcdPrefix: string;
  /** What every stored Secret value starts with, e.g. `k8s:enc:aesgcm:v1:key1:`. */
  valuePrefix: string;
  /** The raw stored bytes of a key (etcdctl get / the embedded store). */
  rawGet(key: string): Promise<Buffer | undefined>;
}

/**
 * Registers the workflow tests in the current describe, after the caller's before() that starts the
 * server (hooks run in registration order); `t()` is read only from then on.
 */
export function kubectlWorkflowTests(t: () => WorkflowTarget): void {
  let k: Kubectl;
  before(() => {
    k = new Kubectl(t().server.kubeconfigPath);
  });
  after(() => k?.cleanup());

  test('create secret generic (literal and file), get as table, -A, yaml and json, describe', async () => {
    assert.equal(await k.ok(['create', 'secret', 'generic', 'secret1', '-n', 'default', '--from-literal=mykey=mydata']), 'secret/secret1 created\n');
    const file = join(t().dir, 'cert.bin');
    writeFileSync(file, Buffer.from([0, 1, 2, 255, 254]));
    await k.ok(['create', 'secret', 'generic', 'filesecret', `--from-file=blob=${file}`]);
    const dup = await k.fails(['create', 'secret', 'generic', 'secret1', '--from-literal=mykey=other']);
    assert.match(dup, /error: failed to create secret secrets "secret1" already exists/);

    const table = await k.ok(['get', 'secrets']);
    assert.match(table, /^NAME\s+TYPE\s+DATA\s+AGE\n/);
    assert.match(table, /\nsecret1\s+Opaque\s+1\s+\d+s\n/);
    assert.match(table, /\nfilesecret\s+Opaque\s+1\s+\d+s\n/);
    const all = await k.ok(['get', 'secrets', '-A']);
    assert.match(all, /^NAMESPACE\s+NAME\s+TYPE\s+DATA\s+AGE\n/);
    assert.match(all, /\ndefault\s+secret1\s+Opaque\s+1\s/);

    const yaml = await k.ok(['get', 'secret', 'secret1', '-o', 'yaml']);
    assert.match(yaml, /mykey: bXlkYXRh/);
    assert.match(yaml, /resourceVersion: "\d+"/);
    assert.match(yaml, /uid: [0-9a-f-]{36}/);
    const obj = JSON.parse(await k.ok(['get', 'secret', 'filesecret', '-o', 'json'])) as { data: Record<string, string>; type: string };
    assert.deepEqual(Buffer.from(obj.data['blob'] as string, 'base64'), Buffer.from([0, 1, 2, 255, 254]));
    assert.equal(obj.type, 'Opaque');

    const described = await k.ok(['describe', 'secret', 'secret1']);
    assert.match(described, /Name:\s+secret1/);
    assert.match(described, /mykey:\s+6 bytes/);

    const missing = await k.fails(['get', 'secret', 'nosuch']);
    assert.match(missing, /Error from server \(NotFound\): secrets "nosuch" not found/);
    const badName = await k.fails(['create', 'secret', 'generic', 'Bad_Name', '--from-literal=a=b']);
    assert.match(badName, /Secret "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"/);
    const noNs = await k.fails(['create', 'secret', 'generic', 's2', '-n', 'nosuchns', '--from-literal=a=b']);
    assert.match(noNs, /namespaces "nosuchns" not found/);
  });

  test('values are stored encrypted under the full key; namespaces as plain JSON', async () => {
    await k.ok(['create', 'secret', 'generic', 'atrest-check', '--from-literal=password=hunter2-plaintext']);
    const raw = await t().rawGet(`${t().etcdPrefix}/secrets/default/atrest-check`);
    assert.ok(raw, `the secret is at ${t().etcdPrefix}/secrets/default/atrest-check`);
    assert.equal(raw.subarray(0, t().valuePrefix.length).toString('latin1'), t().valuePrefix);
    assert.ok(!raw.includes(Buffer.from('hunter2-plaintext')), 'no plaintext value');
    assert.ok(!raw.includes(Buffer.from(Buffer.from('hunter2-plaintext').toString('base64'))), 'no base64 plaintext');
    const ns = await t().rawGet(`${t().etcdPrefix}/namespaces/default`);
    assert.ok(ns && ns.toString('utf8').startsWith('{"kind":"Namespace"'), 'namespaces stay identity (JSON)');
  });

  test('get -A -o json | replace -f - keeps unchanged objects; a stale resourceVersion gets 409', async () => {
    await k.ok(['create', 'secret', 'generic', 'rep1', '--from-literal=a=1']);
    const before = JSON.parse(await k.ok(['get', 'secret', 'rep1', '-o', 'json'])) as { metadata: { resourceVersion: string } };
    const listed = await k.ok(['get', 'secrets', '-A', '-o', 'json']);
    const replaced = await k.ok(['replace', '-f', '-'], { input: listed });
    assert.match(replaced, /secret\/rep1 replaced/);
    const afterReplace = JSON.parse(await k.ok(['get', 'secret', 'rep1', '-o', 'json'])) as { metadata: { resourceVersion: string } };
    assert.equal(afterReplace.metadata.resourceVersion, before.metadata.resourceVersion, 'an unchanged PUT does not bump resourceVersion');

    // Change it, then replace with the old (stale) copy.
    const stale = await k.ok(['get', 'secret', 'rep1', '-o', 'json']);
    await k.ok(['label', 'secret', 'rep1', 'changed=yes']);
    const conflict = await k.fails(['replace', '-f', '-'], { input: stale });
    assert.match(conflict, /Error from server \(Conflict\): error when replacing "STDIN": Operation cannot be fulfilled on secrets "rep1": the object has been modified; please apply your changes to the latest version and try again/);
    const gone = JSON.parse(stale) as { metadata: Record<string, unknown> };
    gone.metadata['name'] = 'gone';
    const notFound = await k.fails(['replace', '-f', '-'], { input: JSON.stringify(gone) });
    assert.match(notFound, /secrets "gone" not found/);
  });

  test('apply: client-side (create, configure, unchanged) and server-side; strict unknown fields', async () => {
    const manifest = (labels: string, data: string) => `apiVersion: v1
kind: Secret
metadata:
  name: applied
  namespace: default
  labels: {${labels}}
type: Opaque
data: {${data}}
`;
    assert.match(await k.ok(['apply', '-f', '-'], { input: manifest('app: demo', 'other: b3RoZXI=') }), /secret\/applied created/);
    assert.match(await k.ok(['apply', '-f', '-'], { input: manifest('app: demo', 'other: b3RoZXI=') }), /secret\/applied unchanged/);
    assert.match(await k.ok(['apply', '-f', '-'], { input: manifest('app: demo2', 'third: dGhpcmQ=') }), /secret\/applied configured/);
    const obj = JSON.parse(await k.ok(['get', 'secret', 'applied', '-o', 'json'])) as { data: Record<string, string>; metadata: { labels: Record<string, string>; annotations: Record<string, string> } };
    assert.deepEqual(obj.data, { third: 'dGhpcmQ=' }, 'the field dropped from the manifest is removed by the 3-way patch');
    assert.equal(obj.metadata.labels['app'], 'demo2');
    assert.ok(obj.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration']?.includes('"third"'));

    const ssa = (data: string) => `apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa
  namespace: default
data: {${data}}
`;
    assert.match(await k.ok(['apply', '--server-side', '-f', '-'], { input: ssa('a: "1", b: "2"') }), /configmap\/ssa serverside-applied/);
    assert.match(await k.ok(['apply', '--server-side', '-f', '-'], { input: ssa('a: "1"') }), /configmap\/ssa serverside-applied/);
    const cm = JSON.parse(await k.ok(['get', 'cm', 'ssa', '-o', 'json'])) as { data: Record<string, string> };
    assert.deepEqual(cm.data, { a: '1' }, 'a field the same manager no longer applies is removed');

    await k.ok(['create', 'configmap', 'owned', '--from-literal=k=v']);
    const other = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\ndata:\n  k: other\n';
    const conflict = await k.fails(['apply', '--server-side', '-f', '-'], { input: other });
    assert.match(conflict, /Apply failed with 1 conflict: conflict with "kubectl-create" using v1: \.data\.k/);
    assert.match(await k.ok(['apply', '--server-side', '--force-conflicts', '-f', '-'], { input: other }), /configmap\/owned serverside-applied/);
    assert.equal(await k.ok(['get', 'cm', 'owned', '-o', 'jsonpath={.data.k}']), 'other');

    const bad = await k.fails(['apply', '-f', '-'], { input: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\nfoo: bar\n' });
    assert.match(bad, /strict decoding error: unknown field "foo"/);
  });

  test('edit via EDITOR, patch, dry-run, delete', async () => {
    await k.ok(['create', 'secret', 'generic', 'editme', '--from-literal=mykey=mydata']);
    const editor = join(t().dir, 'editor.sh');
    writeFileSync(editor, '#!/bin/sh\nsed -i "s/bXlkYXRh/ZWRpdGVk/" "$1"\n');
    chmodSync(editor, 0o755);
    assert.match(await k.ok(['edit', 'secret', 'editme'], { env: { EDITOR: editor, KUBE_EDITOR: editor } }), /secret\/editme edited/);
    const edited = JSON.parse(await k.ok(['get', 'secret', 'editme', '-o', 'json'])) as { data: Record<string, string> };
    assert.equal(Buffer.from(edited.data['mykey'] as string, 'base64').toString(), 'edited');

    await k.ok(['patch', 'secret', 'editme', '--type=merge', '-p', '{"metadata":{"labels":{"x":"y"}}}']);
    await k.ok(['patch', 'secret', 'editme', '--type=json', '-p', '[{"op":"add","path":"/data/extra","value":"ZXh0cmE="}]']);
    await k.ok(['patch', 'secret', 'editme', '-p', '{"data":{"mykey":null}}']);
    const patched = JSON.parse(await k.ok(['get', 'secret', 'editme', '-o', 'json'])) as { data: Record<string, string>; metadata: { labels: Record<string, string> } };
    assert.deepEqual(patched.data, { extra: 'ZXh0cmE=' });
    assert.equal(patched.metadata.labels['x'], 'y');

    await k.ok(['create', 'secret', 'generic', 'dry', '--from-literal=a=b', '--dry-run=server']);
    await k.fails(['get', 'secret', 'dry']);
    await k.ok(['delete', 'secret', 'editme', '--dry-run=server']);
    await k.ok(['get', 'secret', 'editme']);

    assert.equal(await k.ok(['delete', 'secret', 'editme']), 'secret "editme" deleted\n');
    assert.match(await k.fails(['delete', 'secret', 'editme']), /Error from server \(NotFound\): secrets "editme" not found/);
  });

  test('namespaces and configmaps: create, get, describe, delete cascades', async () => {
    assert.equal(await k.ok(['create', 'namespace', 'team-a']), 'namespace/team-a created\n');
    assert.match(await k.fails(['create', 'namespace', 'team-a']), /Error from server \(AlreadyExists\): namespaces "team-a" already exists/);
    await k.ok(['create', 'configmap', 'cm1', '-n', 'team-a', '--from-literal=k=v']);
    await k.ok(['create', 'secret', 'generic', 's1', '-n', 'team-a', '--from-literal=k=v']);
    assert.match(await k.ok(['get', 'cm', '-A']), /^NAMESPACE\s+NAME\s+DATA\s+AGE\n(.*\n)*team-a\s+cm1\s+1\s/);
    const ns = await k.ok(['get', 'ns']);
    assert.match(ns, /^NAME\s+STATUS\s+AGE\n/);
    for (const name of ['default', 'kube-system', 'kube-public', 'team-a']) assert.match(ns, new RegExp(`\\n${name}\\s+Active\\s`));
    assert.match(await k.ok(['describe', 'configmap', 'cm1', '-n', 'team-a']), /Events:\s+<none>/);
    assert.match(await k.ok(['describe', 'ns', 'team-a']), /kubernetes.io\/metadata.name=team-a/);

    assert.equal(await k.ok(['delete', 'namespace', 'team-a']), 'namespace "team-a" deleted\n');
    assert.match(await k.fails(['get', 'cm', 'cm1', '-n', 'team-a']), /NotFound/);
    const leftovers = await k.run(['get', 'secrets,cm', '-n', 'team-a', '-o', 'name']);
    assert.equal(leftovers.stdout, '', 'the contents went with the namespace');
    assert.match(await k.fails(['delete', 'namespace', 'default']), /this namespace may not be deleted/);
    assert.equal(await k.ok(['get', '--raw', '/healthz']), 'ok');
  });
}
