// Issue #20 §4: a rewrite that starts before every API server has switched to a rotated KEK says so
// instead of reporting OK. A real plugin (local backend, refresh every 100 ms) in this process; the
// "API server" is a second set of kms v2 transformers that has not polled Status since the rotation
// (kube-apiserver polls once a minute), so it keeps writing with the old key_id. In the middle of the
// run the KEK is rotated and that server writes a key the run has already passed: the run reports
// the key_id change (what it rewrote before is stale again) and the value written meanwhile with the
// old key, and is not ok (exit 1). A run without either is ok.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseEncryptionConfig } from '../../src/config/load.js';
import { createKmsProviders } from '../../src/kms/factory.js';
import { localBackend } from '../../src/plugin/backends/local.js';
import { startPluginServer } from '../../src/plugin/server.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import { buildTransformers } from '../../src/transform/build.js';
import { CheckedReader } from '../../src/storage/checked-read.js';
import { formatRewriteSummary, rewriteStore, SWITCH_ADVICE } from '../../src/tools/rewrite.js';
import { openEngine } from '../../src/cli/engine.js';
import { freshKeyIds } from '../../src/cli/rewrite.js';
import { checkExitCode } from '../../src/cli/exit-codes.js';
import { makeTempDir, TestKmsClient, waitFor } from '../helpers/plugin.js';
import { inProcessLogger } from '../helpers/test-log.js';
import { SECRETS, secretObject, seedOldSecrets, writeConfigs } from './rewrite-fixture.js';

test('rewrite: a rotation during the run and a server still writing with the old key_id are reported, not OK', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-rewrite-rotation-');
  const ctx = { log: inProcessLogger('rewrite-rotation') };
  const keyFile = join(dir, 'kek.json');
  await localBackend.initKey({ keyFile }, ctx);
  const backend = await localBackend.open({ keyFile }, ctx);
  const socket = join(dir, 'kms.sock');
  const plugin = await startPluginServer({ listen: `unix://${socket}`, backend, log: inProcessLogger('kms-plugin'), refreshIntervalMs: 100 });
  const client = TestKmsClient.forPath(socket);
  const closers: Array<() => Promise<unknown> | void> = [];
  try {
    const { newPath } = await writeConfigs(dir, socket);
    const seed = openSqliteStore(join(dir, 'store.db'));
    const keys = await seedOldSecrets(seed, 12);
    await seed.close();

    // The "API server": its own kms v2 state, made before the rotation and never refreshed here.
    const server = createKmsProviders({ log: inProcessLogger('apiserver') });
    closers.push(() => server.close());
    const serverSecrets = buildTransformers(parseEncryptionConfig(await readFile(newPath, 'utf8'), 'new.yaml').config, { kms: server.factory }).forResource(SECRETS);
    await server.ready();

    const engine = await openEngine({ encryptionProviderConfig: newPath, dataDir: dir, etcdPrefix: '/registry' }, { readonly: false, log: inProcessLogger('rewrite') });
    closers.push(() => engine.close());
    await engine.ready();
    const writers = engine.writeKmsProviders();
    const before = (await client.status()).keyId;
    const passed = keys[0]!;

    const summary = await rewriteStore({
      store: engine.store, transformers: engine.transformers, etcdPrefix: '/registry', selects: engine.selects, batchSize: 4,
      reader: new CheckedReader(engine.kmsProviders()),
      recheckOtherWrites: true,
      keyIds: () => freshKeyIds(writers),
      afterBatch: async (n) => {
        if (n !== 1) return;
        await localBackend.rotateKey({ keyFile }, ctx);
        await waitFor('the plugin to report the new key_id', async () => (await client.status()).keyId !== before);
        // The server writes a key of the first batch (already rewritten) with its old key_id.
        const kv = await engine.store.get(passed);
        await engine.store.update(passed, await serverSecrets.toStorage(secretObject('s000', 'changed'), Buffer.from(passed)), kv!.modRevision);
      },
    });
    assert.equal(summary.rewritten, 12);
    assert.equal(summary.keyChanged.length, 1, JSON.stringify(summary));
    assert.equal(summary.keyChanged[0]!.provider, 'rewrite-kms');
    assert.notEqual(summary.keyChanged[0]!.from, summary.keyChanged[0]!.to);
    assert.deepEqual(summary.staleWrittenMeanwhile, [passed]);
    assert.equal(summary.ok, false);
    assert.equal(summary.complete, true);
    assert.equal(checkExitCode(summary), 1);
    const text = formatRewriteSummary(summary);
    assert.match(text, /the key_id of kms v2 provider "rewrite-kms" changed during the run \(sha256:[0-9a-f]+ -> sha256:[0-9a-f]+\): values rewritten before the change are stale again/);
    assert.match(text, new RegExp(`1 value was written during the run with an old key or provider, e\\.g\\. ${passed}:`));
    assert.ok(text.includes(SWITCH_ADVICE));
    assert.match(text, /^NOT OK: /m);

    // A second run, with nothing changing under it, leaves everything current and says OK.
    const again = await rewriteStore({
      store: engine.store, transformers: engine.transformers, etcdPrefix: '/registry', selects: engine.selects, batchSize: 4,
      reader: new CheckedReader(engine.kmsProviders()), recheckOtherWrites: true, keyIds: () => freshKeyIds(writers),
    });
    assert.deepEqual([again.keyChanged, again.staleWrittenMeanwhile, again.ok], [[], [], true]);
    assert.ok(again.rewritten >= 4, 'the values of the first batch and the one the server wrote');
  } finally {
    for (const close of closers.reverse()) await close();
    client.close();
    await plugin.close();
    await backend.close();
    await cleanup();
  }
});
