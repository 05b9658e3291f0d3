// `atrest decrypt` over stored data, as a process: every key of a real `etcdctl snapshot save` file
// written through the engine and the storage layer (kms v2 via the real `atrest kms-plugin`, aesgcm,
// aescbc, secretbox, identity; overwrites and deletions), one key from etcd or the embedded store,
// a --prefix listing; -o raw|json|yaml with JSON objects and Kubernetes protobuf objects (real
// kubectl 1.32 request bodies from test/fixtures/kubectl-captures, plus richer ones built here).
// Undecryptable values are named on stderr with exit 1; stderr never holds a secret value.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { parse as parseYaml } from 'yaml';
import { parseEncryptionConfig } from '../../src/config/load.js';
import { createKmsProviders, type KmsProviders } from '../../src/kms/factory.js';
import { EncryptedStore } from '../../src/storage/encrypted-store.js';
import { openEtcdStore } from '../../src/storage/etcd.js';
import { parseStorageKey } from '../../src/storage/keys.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { Store } from '../../src/storage/types.js';
import { buildTransformers } from '../../src/transform/build.js';
import type { TransformerSet } from '../../src/transform/types.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { makeTempDir, PluginProcess, runAtrest } from '../helpers/plugin.js';

const run = promisify(execFile);
const MAGIC = Buffer.from('k8s\0', 'latin1');
const SECRET_VALUE = 'decrypt-test-s3cret-9d1e';
const KEYS = {
  gcm: Buffer.alloc(32, 11).toString('base64'),
  cbc: Buffer.alloc(32, 12).toString('base64'),
  box: Buffer.alloc(32, 13).toString('base64'),
  gone: Buffer.alloc(32, 14).toString('base64'),
};

// --- real kubectl 1.32 protobuf bodies (same encoding kube-apiserver stores) ---
interface Capture { ct?: string; path: string; body64?: string }
const captures = readFileSync(new URL('../fixtures/kubectl-captures/scenario_kubectl.requests.jsonl', import.meta.url), 'utf8')
  .split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Capture)
  .filter((c) => c.ct === 'application/vnd.kubernetes.protobuf' && c.body64);
const kubectlBody = (path: string): Buffer => Buffer.from(captures.find((c) => c.path === path)!.body64!, 'base64');
const KUBECTL_SECRET1 = kubectlBody('/api/v1/namespaces/default/secrets'); // secret1: mykey=mydata
const KUBECTL_NS_X = kubectlBody('/api/v1/namespaces'); // namespace x

// --- richer protobuf objects, laid out as k8s.io/api generated.proto says ---
function msg(build: (w: BinaryWriter) => void): Uint8Array {
  const w = new BinaryWriter();
  build(w);
  return w.finish();
}
const str = (w: BinaryWriter, no: number, s: string) => w.tag(no, WireType.LengthDelimited).string(s);
const sub = (w: BinaryWriter, no: number, b: Uint8Array) => w.tag(no, WireType.LengthDelimited).bytes(b);
const entry = (k: string, v: string | Uint8Array) => msg((w) => { str(w, 1, k); if (typeof v === 'string') str(w, 2, v); else sub(w, 2, v); });
function objectMeta(m: { name: string; namespace?: string; uid: string; rv: string; created: number; labels?: Record<string, string>; annotations?: Record<string, string> }): Uint8Array {
  return msg((w) => {
    str(w, 1, m.name);
    str(w, 2, '');
    str(w, 3, m.namespace ?? '');
    str(w, 5, m.uid);
    str(w, 6, m.rv);
    w.tag(7, WireType.Varint).int64(0);
    sub(w, 8, msg((t) => { t.tag(1, WireType.Varint).int64(m.created); t.tag(2, WireType.Varint).int32(0); }));
    for (const [k, v] of Object.entries(m.labels ?? {})) sub(w, 11, entry(k, v));
    for (const [k, v] of Object.entries(m.annotations ?? {})) sub(w, 12, entry(k, v));
    sub(w, 17, msg((f) => {
      str(f, 1, 'kubectl-create'); str(f, 2, 'Update'); str(f, 3, 'v1');
      sub(f, 4, msg((t) => t.tag(1, WireType.Varint).int64(m.created)));
      str(f, 6, 'FieldsV1');
      sub(f, 7, msg((r) => sub(r, 1, Buffer.from('{"f:data":{}}'))));
    }));
  });
}
function k8sProtobuf(kind: string, raw: Uint8Array): Buffer {
  return Buffer.concat([MAGIC, msg((w) => {
    sub(w, 1, msg((t) => { str(t, 1, 'v1'); str(t, 2, kind); }));
    sub(w, 2, raw);
    str(w, 3, '');
    str(w, 4, '');
  })]);
}
const CREATED = 1_764_000_000; // 2025-11-24T16:00:00Z
const PROTO_SECRET = k8sProtobuf('Secret', msg((w) => {
  sub(w, 1, objectMeta({ name: 'db', namespace: 'prod', uid: '6f1c2a8e-0000-4000-8000-000000000001', rv: '41', created: CREATED, labels: { app: 'db' }, annotations: { note: 'x' } }));
  sub(w, 2, entry('password', Buffer.from(SECRET_VALUE)));
  sub(w, 2, entry('bin', Buffer.from([0, 1, 2, 255])));
  str(w, 3, 'Opaque');
  w.tag(5, WireType.Varint).bool(true);
}));
const PROTO_CONFIGMAP = k8sProtobuf('ConfigMap', msg((w) => {
  sub(w, 1, objectMeta({ name: 'settings', namespace: 'prod', uid: '6f1c2a8e-0000-4000-8000-000000000002', rv: '42', created: CREATED, labels: { tier: 'web' } }));
  sub(w, 2, entry('mode', 'fast'));
  sub(w, 3, entry('blob', Buffer.from([9, 8, 7])));
}));
const PROTO_POD = k8sProtobuf('Pod', msg((w) => {
  sub(w, 1, objectMeta({ name: 'web-0', namespace: 'prod', uid: 'u3', rv: '43', created: CREATED }));
  sub(w, 2, msg((s) => str(s, 5, 'spec-not-decoded')));
}));
const jsonSecret = (ns: string, name: string, value: string) =>
  Buffer.from(JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, data: { k: Buffer.from(value).toString('base64') } }));

function config(secretsProviders: string, kmsSocket: string): string {
  const providers: Record<string, string> = {
    kms: `      - kms: { apiVersion: v2, name: plug, endpoint: "unix://${kmsSocket}", timeout: 5s }\n`,
    gcm: `      - aesgcm: { keys: [{ name: g1, secret: "${KEYS.gcm}" }] }\n`,
    cbc: `      - aescbc: { keys: [{ name: c1, secret: "${KEYS.cbc}" }] }\n`,
    box: `      - secretbox: { keys: [{ name: b1, secret: "${KEYS.box}" }] }\n`,
    gone: `      - aesgcm: { keys: [{ name: gone, secret: "${KEYS.gone}" }] }\n`,
    id: '      - identity: {}\n',
  };
  return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
${secretsProviders.split(',').map((p) => providers[p]).join('')}  - resources: [configmaps]
    providers:
${providers['gcm']}${providers['id']}`;
}
const READ = 'kms,gcm,cbc,box,id';

function engineStore(store: Store, set: TransformerSet): EncryptedStore {
  return new EncryptedStore(store, (key) => set.forResource(parseStorageKey('/registry', key).groupResource));
}

interface KubeList { apiVersion: string; kind: string; items: Array<{ kind: string; metadata: { name: string; namespace?: string; [k: string]: unknown }; data?: Record<string, string>; [k: string]: unknown }> }

describe('atrest decrypt over stored data', { skip: !etcdAvailable() && 'etcd is not installed' }, () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  let cluster: EtcdCluster;
  let plugin: PluginProcess;
  let readConfig: string;
  let snapshotFile: string;
  let socket: string;
  const expectedSecrets = new Map<string, string>();

  before(async () => {
    tmp = await makeTempDir('atrest-decrypt-');
    socket = join(tmp.dir, 'kms.sock');
    const keyFile = join(tmp.dir, 'kek.json');
    assert.equal((await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile])).code, 0);
    plugin = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile]);
    await plugin.waitForEvent('start');
    cluster = await startEtcdCluster(1);
    readConfig = join(tmp.dir, 'read.yaml');
    await writeFile(readConfig, config(READ, socket));

    const raw = openEtcdStore({ endpoints: cluster.endpoints });
    const kmsSets: KmsProviders[] = [];
    try {
      // One writer per provider: the configuration with that provider first.
      const writer = async (first: string) => {
        const kms = createKmsProviders({});
        kmsSets.push(kms);
        const set = buildTransformers(parseEncryptionConfig(config(first === 'kms' ? READ : `${first},${READ}`, socket), 'w.yaml').config, { kms: kms.factory });
        await kms.ready();
        return engineStore(raw, set);
      };
      const w = { kms: await writer('kms'), gcm: await writer('gcm'), cbc: await writer('cbc'), box: await writer('box'), id: await writer('id'), gone: await writer('gone') };
      await w.kms.create('/registry/secrets/default/secret1', KUBECTL_SECRET1);
      expectedSecrets.set('default/secret1', 'mydata');
      await w.gcm.create('/registry/secrets/prod/db', PROTO_SECRET);
      expectedSecrets.set('prod/db', SECRET_VALUE);
      await w.cbc.create('/registry/secrets/ns1/cbc', jsonSecret('ns1', 'cbc', 'cbc-value'));
      expectedSecrets.set('ns1/cbc', 'cbc-value');
      await w.box.create('/registry/secrets/ns1/box', jsonSecret('ns1', 'box', 'box-value'));
      expectedSecrets.set('ns1/box', 'box-value');
      await w.id.create('/registry/secrets/ns1/plain', jsonSecret('ns1', 'plain', 'plain-value'));
      expectedSecrets.set('ns1/plain', 'plain-value');
      // overwritten: first with aescbc, then with kms v2; the snapshot shows the latest
      const rev = await w.cbc.create('/registry/secrets/ns1/rotated', jsonSecret('ns1', 'rotated', 'old-value'));
      await w.kms.update('/registry/secrets/ns1/rotated', jsonSecret('ns1', 'rotated', 'new-value'), rev);
      expectedSecrets.set('ns1/rotated', 'new-value');
      // deleted: gone from the snapshot's live keys
      await w.gcm.create('/registry/secrets/ns1/deleted', jsonSecret('ns1', 'deleted', 'deleted-value'));
      await raw.delete('/registry/secrets/ns1/deleted');
      // written with a key the reader does not have: undecryptable, named on stderr
      await w.gone.create('/registry/secrets/ns1/lost', jsonSecret('ns1', 'lost', 'lost-value'));
      await w.gcm.create('/registry/configmaps/prod/settings', PROTO_CONFIGMAP);
      await w.id.create('/registry/namespaces/x', KUBECTL_NS_X);
      await w.id.create('/registry/pods/prod/web-0', PROTO_POD);
      await raw.create('compact_rev_key', Buffer.from('not under the prefix'));
    } finally {
      for (const k of kmsSets) await k.close();
      await raw.close();
    }
    snapshotFile = join(tmp.dir, 'backup.db');
    await run('/usr/bin/etcdctl', ['--endpoints', cluster.endpoints.join(','), 'snapshot', 'save', snapshotFile], { env: { ...process.env, ETCDCTL_API: '3' } });
  });

  after(async () => {
    await plugin?.stop();
    await cluster?.cleanup();
    await tmp?.cleanup();
  });

  it('--snapshot -o json: a v1 List of every live object, decoded from JSON and protobuf; the undecryptable key named, exit 1', async () => {
    const r = await runAtrest(['decrypt', '--snapshot', snapshotFile, '--encryption-provider-config', readConfig, '-o', 'json']);
    assert.equal(r.code, 1, r.stderr);
    const list = JSON.parse(r.stdout) as KubeList;
    assert.equal(list.apiVersion, 'v1');
    assert.equal(list.kind, 'List');
    const byName = new Map(list.items.map((o) => [`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`, o]));
    assert.deepEqual([...byName.keys()].sort(), [
      'ConfigMap/prod/settings', 'Namespace//x', 'Pod/prod/web-0',
      ...[...expectedSecrets.keys()].map((k) => `Secret/${k}`),
    ].sort());
    for (const [nsName, value] of expectedSecrets) {
      const s = byName.get(`Secret/${nsName}`)!;
      const data = s.data!;
      const first = Object.values(data).find((v) => Buffer.from(v, 'base64').toString() === value);
      assert.ok(first, `${nsName}: data holds the decrypted value (base64, as kubectl shows)`);
    }
    // the kubectl-encoded secret, exactly as kubectl get -o json shows it
    assert.deepEqual(byName.get('Secret/default/secret1'), { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'secret1', namespace: 'default' }, data: { mykey: Buffer.from('mydata').toString('base64') } });
    const db = byName.get('Secret/prod/db')!;
    assert.equal(db['type'], 'Opaque');
    assert.equal(db['immutable'], true);
    assert.equal(db.data!['bin'], Buffer.from([0, 1, 2, 255]).toString('base64'));
    assert.deepEqual(db.metadata['labels'], { app: 'db' });
    assert.deepEqual(db.metadata['annotations'], { note: 'x' });
    assert.equal(db.metadata['uid'], '6f1c2a8e-0000-4000-8000-000000000001');
    assert.equal(db.metadata['resourceVersion'], '41');
    assert.equal(db.metadata['creationTimestamp'], '2025-11-24T16:00:00Z');
    assert.deepEqual(db.metadata['managedFields'], [{ manager: 'kubectl-create', operation: 'Update', apiVersion: 'v1', time: '2025-11-24T16:00:00Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:data': {} } }]);
    assert.deepEqual(byName.get('ConfigMap/prod/settings')!['data'], { mode: 'fast' });
    assert.deepEqual(byName.get('ConfigMap/prod/settings')!['binaryData'], { blob: Buffer.from([9, 8, 7]).toString('base64') });
    assert.deepEqual(byName.get('Namespace//x'), { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
    assert.deepEqual(Object.keys(byName.get('Pod/prod/web-0')!).sort(), ['apiVersion', 'kind', 'metadata']);
    // stderr: counts by writer, the lost key by name, the partial Pod; never a value
    // 10 object keys under the prefix: 9 decrypt; 4 secrets are stale (not kms v2, the write provider)
    assert.match(r.stderr, /9 values decrypted, 1 undecryptable, 4 stale/);
    assert.match(r.stderr, /undecryptable \/registry\/secrets\/ns1\/lost: /);
    assert.match(r.stderr, /kms v2:plug:\S+ 2/);
    assert.match(r.stderr, /aesgcm:g1 2/);
    assert.match(r.stderr, /aescbc:c1 1/);
    assert.match(r.stderr, /secretbox:b1 1/);
    assert.match(r.stderr, /identity 3/);
    assert.match(r.stderr, /1 v1 Pod objects .* only apiVersion, kind and metadata/);
    for (const v of [...expectedSecrets.values(), 'lost-value', 'old-value']) {
      assert.ok(!r.stderr.includes(v) && !r.stderr.includes(Buffer.from(v).toString('base64')), `stderr holds no ${v}`);
    }
    assert.ok(!r.stdout.includes('old-value') && !r.stdout.includes(Buffer.from('old-value').toString('base64')), 'the overwritten value is not shown');
    assert.ok(!r.stdout.includes(Buffer.from('deleted-value').toString('base64')), 'the deleted key is not shown');
  });

  it('--snapshot revision and key counts agree with etcdctl snapshot status', async () => {
    const { stdout } = await run('/usr/bin/etcdctl', ['snapshot', 'status', snapshotFile, '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
    const status = JSON.parse(stdout) as { revision: number };
    const r = await runAtrest(['decrypt', '--snapshot', snapshotFile, '--encryption-provider-config', readConfig, '--resources', 'configmaps']);
    assert.equal(r.code, 0, r.stderr);
    // 11 live keys: 7 secrets (one of them lost), 1 configmap, 1 namespace, 1 pod, compact_rev_key
    assert.match(r.stderr, new RegExp(`\\(revision ${status.revision}, 11 live keys\\): 1 values decrypted, 0 undecryptable`));
  });

  it('--snapshot -o yaml --resources: only those resources, YAML that parses to the same List', async () => {
    const r = await runAtrest(['decrypt', '--snapshot', snapshotFile, '--encryption-provider-config', readConfig, '--resources', 'configmaps,namespaces', '-o', 'yaml']);
    assert.equal(r.code, 0, r.stderr);
    const list = parseYaml(r.stdout) as KubeList;
    assert.equal(list.kind, 'List');
    assert.deepEqual(list.items.map((o) => `${o.kind}/${o.metadata.name}`), ['ConfigMap/settings', 'Namespace/x']);
    assert.match(r.stderr, /values of other resources left out/);
  });

  it('--snapshot -o raw: per key a key line, the plaintext bytes and a newline', async () => {
    const r = await runAtrest(['decrypt', '--snapshot', snapshotFile, '--encryption-provider-config', readConfig, '--resources', 'namespaces,configmaps']);
    assert.equal(r.code, 0, r.stderr);
    const expected = Buffer.concat([
      Buffer.from('/registry/configmaps/prod/settings\n'), PROTO_CONFIGMAP, Buffer.from('\n'),
      Buffer.from('/registry/namespaces/x\n'), KUBECTL_NS_X, Buffer.from('\n'),
    ]);
    assert.equal(r.stdout, expected.toString('utf8'));
  });

  it('--etcd-servers KEY: one value from etcd; raw by default, json on request', async () => {
    const rawOut = await runAtrest(['decrypt', '--etcd-servers', cluster.endpoints.join(','), '--encryption-provider-config', readConfig, '/registry/secrets/ns1/rotated']);
    assert.equal(rawOut.code, 0, rawOut.stderr);
    assert.equal(rawOut.stdout, jsonSecret('ns1', 'rotated', 'new-value').toString());
    assert.match(rawOut.stderr, /^read by kms v2 provider "plug"/);
    const json = await runAtrest(['decrypt', '--etcd-servers', cluster.endpoints.join(','), '--encryption-provider-config', readConfig, '/registry/secrets/default/secret1', '-o', 'json']);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'secret1', namespace: 'default' }, data: { mykey: 'bXlkYXRh' } });
    const missing = await runAtrest(['decrypt', '--etcd-servers', cluster.endpoints.join(','), '--encryption-provider-config', readConfig, '/registry/secrets/ns1/deleted']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /key \/registry\/secrets\/ns1\/deleted not found/);
    const lost = await runAtrest(['decrypt', '--etcd-servers', cluster.endpoints.join(','), '--encryption-provider-config', readConfig, '/registry/secrets/ns1/lost']);
    assert.equal(lost.code, 1);
    assert.ok(!lost.stderr.includes('lost-value') && lost.stdout === '');
  });

  it('--data-dir KEY and --prefix on the embedded store; yaml of a protobuf ConfigMap', async () => {
    const dataDir = join(tmp.dir, 'embedded');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dataDir);
    const raw = openSqliteStore(join(dataDir, 'store.db'));
    try {
      const set = buildTransformers(parseEncryptionConfig(config('gcm,id', socket), 'w.yaml').config);
      const es = engineStore(raw, set);
      await es.create('/registry/configmaps/prod/settings', PROTO_CONFIGMAP);
      await es.create('/registry/secrets/prod/db', PROTO_SECRET);
      await es.create('/registry/secrets/prod/other', jsonSecret('prod', 'other', 'other-value'));
    } finally {
      await raw.close();
    }
    const gcmConfig = join(tmp.dir, 'gcm.yaml');
    await writeFile(gcmConfig, config('gcm,id', socket));
    const y = await runAtrest(['decrypt', '--data-dir', dataDir, '--encryption-provider-config', gcmConfig, '/registry/configmaps/prod/settings', '-o', 'yaml']);
    assert.equal(y.code, 0, y.stderr);
    const cm = parseYaml(y.stdout) as { kind: string; metadata: { labels: Record<string, string> }; data: Record<string, string> };
    assert.equal(cm.kind, 'ConfigMap');
    assert.deepEqual(cm.metadata.labels, { tier: 'web' });
    assert.deepEqual(cm.data, { mode: 'fast' });
    const p = await runAtrest(['decrypt', '--data-dir', dataDir, '--encryption-provider-config', gcmConfig, '--prefix', '/registry/secrets/prod/', '-o', 'json']);
    assert.equal(p.code, 0, p.stderr);
    const list = JSON.parse(p.stdout) as KubeList;
    assert.deepEqual(list.items.map((o) => o.metadata.name), ['db', 'other']);
    assert.equal(Buffer.from(list.items[0]!.data!['password']!, 'base64').toString(), SECRET_VALUE);
    assert.match(p.stderr, /2 values decrypted, 0 undecryptable, 0 stale/);
  });

  it('clear one-line errors: not a snapshot, conflicting sources, no key', async () => {
    const junk = join(tmp.dir, 'junk.db');
    await writeFile(junk, Buffer.alloc(10_000, 7));
    // A damaged input is a failure (1); flags that do not go together, or name nothing there, are usage errors (2).
    const cases: Array<[string[], RegExp, number]> = [
      [['--snapshot', junk], /not a readable bbolt file/, 1],
      [['--snapshot', join(tmp.dir, 'nope.db')], /ENOENT|no such file/, 2],
      [['--snapshot', snapshotFile, '/registry/secrets/a/b'], /--snapshot reads every key/, 2],
      [[], /name the storage key/, 2],
      [['--prefix', '/registry/'], /--prefix lists a store/, 2],
      [['--data-dir', join(tmp.dir, 'none'), '/registry/secrets/a/b'], /no embedded store/, 2],
      [['--snapshot', snapshotFile, '--resource', 'secrets'], /--resource names the resource of one value/, 2],
      [['--etcd-servers', cluster.endpoints.join(','), '--in', junk, '/registry/secrets/a/b'], /--in gives the value itself/, 2],
    ];
    for (const [args, re, code] of cases) {
      const r = await runAtrest(['decrypt', '--encryption-provider-config', readConfig, ...args]);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });
});
