// `atrest serve` on a real 3-member etcd cluster with kms v2 (an independent python plugin over a
// UNIX socket): kubectl writes, etcdctl shows only `k8s:enc:kms:v2:` values, two servers on one
// cluster see each other's writes, and stopping one etcd member loses no acknowledged write.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import { PythonKmsPlugin } from '../helpers/python-kms-plugin.js';
import { apiRequest, startTestServer, watchEvents, type TestServer } from '../helpers/server.js';
import { kubectlWorkflowTests } from './kubectl-workflows.js';

const execFileP = promisify(execFile);

async function etcdctl(endpoints: string[], args: string[]): Promise<Buffer> {
  const { stdout } = await execFileP('etcdctl', [`--endpoints=${endpoints.join(',')}`, ...args], { encoding: 'buffer', env: { ...process.env, ETCDCTL_API: '3' } });
  return stdout;
}

describe('kubectl against atrest serve on etcd with kms v2', { skip: (!kubectlAvailable() || !etcdAvailable()) && 'needs kubectl and etcd' }, () => {
  let dir: string;
  let etcd: EtcdCluster;
  let plugin: PythonKmsPlugin;
  let a: TestServer;
  let b: TestServer;
  let ka: Kubectl;
  let kb: Kubectl;
  let c: TestServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'atrest-api-etcd-'));
    plugin = new PythonKmsPlugin(join(dir, 'kms.sock'));
    const [cluster] = await Promise.all([startEtcdCluster(3), plugin.start()]);
    etcd = cluster;
    const config = join(dir, 'encryption.yaml');
    writeFileSync(config, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: pykms
          endpoint: ${plugin.endpoint}
          timeout: 3s
      - identity: {}
`);
    const common = { etcdServers: etcd.endpoints.join(','), encryptionProviderConfig: config };
    a = await startTestServer({ ...common, dataDir: join(dir, 'a') }, mkdtempSync(join(tmpdir(), 'atrest-api-a-')));
    b = await startTestServer({ ...common, dataDir: join(dir, 'b') }, mkdtempSync(join(tmpdir(), 'atrest-api-b-')));
    // A third server on its own key prefix of the same cluster runs the full kubectl workflows.
    c = await startTestServer({ ...common, etcdPrefix: '/atrest-workflows', dataDir: join(dir, 'c') }, mkdtempSync(join(tmpdir(), 'atrest-api-c-')));
    ka = new Kubectl(a.server.kubeconfigPath);
    kb = new Kubectl(b.server.kubeconfigPath);
  });

  after(async () => {
    ka?.cleanup();
    kb?.cleanup();
    await a?.close();
    await b?.close();
    await c?.close();
    await plugin?.stop();
    await etcd?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('etcdctl get shows the kms v2 prefix and no plaintext; kubectl describe shows the value', async () => {
    await ka.ok(['create', 'secret', 'generic', 'secret1', '-n', 'default', '--from-literal=mykey=mydata-in-etcd']);
    const raw = await etcdctl(etcd.endpoints, ['get', '/registry/secrets/default/secret1', '--print-value-only']);
    assert.ok(raw.subarray(0, 21).toString('latin1').startsWith('k8s:enc:kms:v2:pykms:'), `kms v2 prefix, got ${JSON.stringify(raw.subarray(0, 24).toString('latin1'))}`);
    assert.ok(!raw.includes(Buffer.from('mydata-in-etcd')), 'no plaintext in etcd');
    assert.match(await ka.ok(['describe', 'secret', 'secret1']), /mykey:\s+14 bytes/);
    const yaml = await ka.ok(['get', 'secret', 'secret1', '-o', 'jsonpath={.data.mykey}']);
    assert.equal(Buffer.from(yaml, 'base64').toString(), 'mydata-in-etcd');

    const ns = await etcdctl(etcd.endpoints, ['get', '/registry/namespaces/default', '--print-value-only']);
    assert.ok(ns.toString('utf8').startsWith('{"kind":"Namespace"'), 'namespaces are not in the rule: identity');
    const ready = await apiRequest(a.server, 'GET', '/readyz?verbose');
    assert.equal(ready.status, 200, ready.text);
    assert.match(ready.text, /\[\+\]etcd ok/);
    assert.match(ready.text, /\[\+\]kms-providers ok/);
    const live = await apiRequest(a.server, 'GET', '/livez?verbose');
    assert.doesNotMatch(live.text, /kms/);
    assert.equal((await apiRequest(a.server, 'GET', '/readyz/kms-providers')).text, 'ok');
  });

  test('a watch through one server sees writes through the other, decrypted', async () => {
    const list = (await apiRequest(b.server, 'GET', '/api/v1/namespaces/default/secrets')).json() as { metadata: { resourceVersion: string } };
    const w = watchEvents(b.server, `/api/v1/namespaces/default/secrets?watch=true&resourceVersion=${list.metadata.resourceVersion}&timeoutSeconds=30`, 2);
    await w.ready;
    await ka.ok(['create', 'secret', 'generic', 'watched', '--from-literal=k=watched-value']);
    await ka.ok(['delete', 'secret', 'watched']);
    const events = await w.events;
    assert.deepEqual(events.map((e) => `${e.type} ${String(e.object.metadata['name'])}`), ['ADDED watched', 'DELETED watched']);
    assert.equal(Buffer.from((events[0]?.object['data'] as Record<string, string>)['k'] as string, 'base64').toString(), 'watched-value');
  });

  test('two servers on one cluster: a write through one is read through the other; one member down loses nothing', async () => {
    await ka.ok(['create', 'configmap', 'shared', '--from-literal=k=v1']);
    assert.match(await kb.ok(['get', 'cm', 'shared', '-o', 'jsonpath={.data.k}']), /^v1$/);
    await kb.ok(['create', 'secret', 'generic', 'from-b', '--from-literal=x=y']);
    assert.match(await ka.ok(['get', 'secret', 'from-b']), /from-b\s+Opaque\s+1/);

    await (etcd.members[0] as { stop(): Promise<void> }).stop();
    const acked: string[] = [];
    for (let i = 0; i < 5; i++) {
      await ka.ok(['create', 'secret', 'generic', `during-outage-${i}`, `--from-literal=i=${i}`]);
      acked.push(`during-outage-${i}`);
    }
    const seen = await kb.ok(['get', 'secrets', '-o', 'name']);
    for (const name of acked) assert.match(seen, new RegExp(`secret/${name}\\n`));
    await (etcd.members[0] as { start(): Promise<void> }).start();
    const all = await etcdctl([etcd.endpoints[0] as string], ['get', '--prefix', '/registry/secrets/default/during-outage-', '--keys-only']);
    for (const name of acked) assert.ok(all.toString().includes(`/registry/secrets/default/${name}`), `${name} is on the restarted member`);
  });

  describe('the kubectl workflows on etcd (kms v2, prefix /atrest-workflows)', () => {
    kubectlWorkflowTests(() => ({
      server: c.server,
      dir: c.dir,
      etcdPrefix: '/atrest-workflows',
      valuePrefix: 'k8s:enc:kms:v2:pykms:',
      rawGet: async (key) => {
        const out = await etcdctl(etcd.endpoints, ['get', key, '--print-value-only']);
        // etcdctl ends the value with a newline; an absent key prints nothing.
        return out.length === 0 ? undefined : out.subarray(0, out.length - 1);
      },
    }));
  });
});
