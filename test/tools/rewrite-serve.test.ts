// `atrest rewrite` as a second process next to a running `atrest serve` on the same embedded store:
// the task page's migration (aescbc → kms v2: change the config, restart, re-encrypt) with the tool
// instead of `kubectl get | kubectl replace`. A watch through the API sees every rewrite as a
// MODIFIED event, the real kubectl reads the same data afterwards and can still write. (Conflicts
// with concurrent writes are forced deterministically in rewrite.test.ts and rewrite-etcd.test.ts.)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startApiServer, type RunningApiServer } from '../../src/api/index.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { RewriteSummary } from '../../src/tools/rewrite.js';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import { makeTempDir, runAtrest } from '../helpers/plugin.js';
import { apiRequest, watchEvents } from '../helpers/server.js';
import { KMS_NAME, startLocalPlugin, writeConfigs, type LocalPlugin } from './rewrite-fixture.js';
import { inProcessLogger } from '../helpers/test-log.js';

const COUNT = 12;

describe('atrest rewrite next to a running atrest serve', { skip: !kubectlAvailable() && 'no /usr/bin/kubectl' }, () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  let plugin: LocalPlugin;
  let api: RunningApiServer | undefined;
  let kubectl: Kubectl | undefined;

  before(async () => {
    tmp = await makeTempDir('atrest-rewrite-serve-');
    plugin = await startLocalPlugin(tmp.dir);
  });
  after(async () => {
    kubectl?.cleanup();
    await api?.close();
    await plugin?.close();
    await tmp?.cleanup();
  });

  it('every stale secret is rewritten under the server, seen as MODIFIED by a watch and unchanged through kubectl', async () => {
    const dataDir = join(tmp.dir, 'data');
    const configs = await writeConfigs(tmp.dir, plugin.socket);
    const serve = (config: string) => startApiServer({ log: inProcessLogger('api-server'), securePort: 0, dataDir, encryptionProviderConfig: config });

    // Before: aescbc. Secrets created through kubectl.
    api = await serve(configs.oldPath);
    kubectl = new Kubectl(api.kubeconfigPath);
    for (let i = 0; i < COUNT; i++) await kubectl.ok(['create', 'secret', 'generic', `s${i}`, `--from-literal=k=value-${i}`]);
    await api.close();

    // kms v2 first, restart: old values still read (aescbc), new writes go to kms v2.
    api = await serve(configs.newPath);
    kubectl.cleanup();
    kubectl = new Kubectl(api.kubeconfigPath);
    const list = (await apiRequest(api, 'GET', '/api/v1/namespaces/default/secrets')).json<{ metadata: { resourceVersion: string } }>();
    const watch = watchEvents(api, `/api/v1/namespaces/default/secrets?watch=true&resourceVersion=${list.metadata.resourceVersion}`, COUNT);
    await watch.ready;

    const r = await runAtrest(['rewrite', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir, '--resources', 'secrets', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as RewriteSummary;
    assert.equal(summary.rewritten, COUNT);

    const events = await watch.events;
    assert.deepEqual(events.map((e) => e.type), Array(COUNT).fill('MODIFIED'), 'the server\'s watch saw the other process\'s writes');
    assert.deepEqual(events.map((e) => e.object.metadata['name']).sort(), Array.from({ length: COUNT }, (_, i) => `s${i}`).sort());

    for (let i = 0; i < COUNT; i++) {
      const value = await kubectl.ok(['get', 'secret', `s${i}`, '-o', 'jsonpath={.data.k}']);
      assert.equal(Buffer.from(value, 'base64').toString(), `value-${i}`);
    }
    const raw = openSqliteStore(join(dataDir, 'store.db'), { readonly: true });
    try {
      const page = await raw.list('/registry/secrets/default/');
      assert.equal(page.items.length, COUNT);
      for (const kv of page.items) assert.ok(kv.value.toString('latin1').startsWith(`k8s:enc:kms:v2:${KMS_NAME}:`), kv.key);
    } finally {
      await raw.close();
    }
    const verify = await runAtrest(['verify', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir, '--resources', 'secrets']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    // The server still writes after the other process did (its CAS sees the new revisions).
    await kubectl.ok(['label', 'secret', 's0', 'after=rewrite']);
    assert.equal(await kubectl.ok(['get', 'secret', 's0', '-o', 'jsonpath={.metadata.labels.after}']), 'rewrite');
  });
});
