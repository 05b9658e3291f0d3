// `atrest rewrite` against a real etcd (Debian's etcd): the CLI migrates aescbc values to kms v2
// under the task page's `--etcd-prefix /kubernetes.io`, `atrest verify` agrees, and a competing
// write made right before the compare-and-swap survives (re-read and re-encrypted, not overwritten).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openEtcdStore } from '../../src/storage/etcd.js';
import type { Store, UpdateOp } from '../../src/storage/types.js';
import { rewriteStore, type RewriteSummary } from '../../src/tools/rewrite.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { makeTempDir, runAtrest } from '../helpers/plugin.js';
import { KMS_NAME, SECRETS, newTransformers, oldTransformer, secretObject, seedOldSecrets, startLocalPlugin, writeConfigs, type LocalPlugin } from './rewrite-fixture.js';

const PREFIX = '/kubernetes.io';

describe('atrest rewrite on etcd', { skip: !etcdAvailable() && 'etcd not installed' }, () => {
  let etcd: EtcdCluster;
  let tmp: { dir: string; cleanup: () => Promise<void> };
  let plugin: LocalPlugin;
  let store: ReturnType<typeof openEtcdStore>;

  before(async () => {
    etcd = await startEtcdCluster(1);
    tmp = await makeTempDir('atrest-rewrite-etcd-');
    plugin = await startLocalPlugin(tmp.dir);
    store = openEtcdStore({ endpoints: etcd.endpoints });
  });

  after(async () => {
    await store?.close();
    await plugin?.close();
    await tmp?.cleanup();
    await etcd?.cleanup();
  });

  it('the CLI re-encrypts every stale value, verify exits 0, and a rerun writes nothing', async () => {
    const keys = await seedOldSecrets(store, 40, PREFIX);
    const configs = await writeConfigs(tmp.dir, plugin.socket);
    const common = ['--encryption-provider-config', configs.newPath, '--etcd-servers', etcd.endpoints.join(','), '--etcd-prefix', PREFIX];
    const r = await runAtrest(['rewrite', ...common, '--batch-size', '16', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as RewriteSummary;
    assert.equal(summary.scanned, 40);
    assert.equal(summary.rewritten, 40);
    assert.equal(summary.ok, true);
    for (const key of keys) {
      const kv = await store.get(key);
      assert.ok(kv!.value.toString('latin1').startsWith(`k8s:enc:kms:v2:${KMS_NAME}:`), key);
    }
    const verify = await runAtrest(['verify', ...common]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);

    const revision = await store.revision();
    const again = await runAtrest(['rewrite', ...common, '-o', 'json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as RewriteSummary).alreadyCurrent, 40);
    assert.equal(await store.revision(), revision, 'the rerun wrote nothing');
  });

  it('a write that lands right before the CAS is re-read and re-encrypted, never overwritten', async () => {
    const prefix = '/conflict';
    const keys = await seedOldSecrets(store, 6, prefix);
    const target = keys[3]!;
    const competing = secretObject('s003', 'written-by-the-api-meanwhile');
    let fired = false;
    const racing: Store = Object.create(store) as Store;
    racing.updateMany = async (ops: readonly UpdateOp[]) => {
      if (!fired && ops.some((op) => op.key === target)) {
        fired = true;
        const kv = await store.get(target);
        await store.update(target, await oldTransformer().toStorage(competing, Buffer.from(target)), kv!.modRevision);
      }
      return store.updateMany(ops);
    };
    const engine = await newTransformers(plugin.socket);
    try {
      const summary = await rewriteStore({ store: racing, transformers: engine.transformers, etcdPrefix: prefix, selects: () => true, batchSize: 4 });
      assert.equal(summary.conflictsRetried, 1);
      assert.equal(summary.rewritten, 6);
      const kv = await store.get(target);
      const back = await engine.transformers.forResource(SECRETS).fromStorage(kv!.value, Buffer.from(target));
      assert.deepEqual(back.plaintext, competing, 'the competing value survives');
      assert.equal(back.stale, false, 'and is written by kms v2 now');
    } finally {
      await engine.close();
    }
  });
});
