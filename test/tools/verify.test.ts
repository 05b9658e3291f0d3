// `atrest verify` on a real embedded store: counts per writer, plaintext, stale and undecryptable
// values, the exit code, and that values never appear in its output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseEncryptionConfig } from '../../src/config/load.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import { buildTransformers } from '../../src/transform/build.js';
import { unsafeDeletePath } from '../../src/tools/verify.js';
import { makeTempDir, runAtrest } from '../helpers/plugin.js';

const KEY1 = Buffer.alloc(32, 1).toString('base64');
const KEY2 = Buffer.alloc(32, 2).toString('base64');
const OLD = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc: { keys: [{ name: key1, secret: "${KEY1}" }] }
      - identity: {}
`;
const NEW = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aesgcm: { keys: [{ name: k2, secret: "${KEY2}" }] }
      - aescbc: { keys: [{ name: key1, secret: "${KEY1}" }] }
      - identity: {}
`;
const SECRET_VALUE = 'verify-secret-value-7f3a';

test('verify counts writers, plaintext, stale and undecryptable values, and exits 0 only when all are current', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-verify-');
  try {
    const newConfig = join(dir, 'new.yaml');
    await writeFile(newConfig, NEW);
    const old = buildTransformers(parseEncryptionConfig(OLD, 'old.yaml').config).forResource({ group: '', resource: 'secrets' });
    const plain = Buffer.from(JSON.stringify({ kind: 'Secret', data: { k: Buffer.from(SECRET_VALUE).toString('base64') } }));
    const store = openSqliteStore(join(dir, 'store.db'));
    const a = '/registry/secrets/default/a';
    const p = '/registry/secrets/default/p';
    const t = '/registry/secrets/default/t';
    await store.create(a, await old.toStorage(plain, Buffer.from(a)));
    await store.create(p, plain);
    await store.create(t, Buffer.from('k8s:enc:aescbc:v1:key1:short'));
    await store.create('/registry/configmaps/default/c', plain); // not a configured resource
    await store.close();

    const before = await runAtrest(['verify', '--encryption-provider-config', newConfig, '--data-dir', dir, '-o', 'json']);
    assert.equal(before.code, 1, before.stderr);
    const report = JSON.parse(before.stdout) as { ok: boolean; resources: Array<{ resource: string; total: number; writers: Record<string, number>; plaintext: number; stale: number; undecryptable: Array<{ key: string; error: string }> }> };
    assert.equal(report.ok, false);
    assert.deepEqual(report.resources.map((r) => r.resource), ['secrets']);
    const secrets = report.resources[0]!;
    assert.equal(secrets.total, 3);
    assert.deepEqual(secrets.writers, { 'aescbc:key1': 1, identity: 1 });
    assert.equal(secrets.plaintext, 1);
    assert.equal(secrets.stale, 2);
    assert.deepEqual(secrets.undecryptable.map((u) => u.key), [t]);
    // What the unsafe delete needs (KEP-3926): resource, namespace, name and the API path.
    assert.deepEqual(secrets.undecryptable.map(({ error: _e, ...rest }) => rest), [{
      key: t, resource: 'secrets', namespace: 'default', name: 't',
      deletePath: '/api/v1/namespaces/default/secrets/t?ignoreStoreReadErrorWithClusterBreakingPotential=true',
    }]);
    assert.ok(!before.stdout.includes(SECRET_VALUE) && !before.stdout.includes(Buffer.from(SECRET_VALUE).toString('base64')));

    const table = await runAtrest(['verify', '--encryption-provider-config', newConfig, '--data-dir', dir]);
    assert.equal(table.code, 1);
    assert.ok(table.stdout.includes(`kubectl delete --raw '/api/v1/namespaces/default/secrets/t?ignoreStoreReadErrorWithClusterBreakingPotential=true'`), table.stdout);

    const withResources = await runAtrest(['verify', '--encryption-provider-config', newConfig, '--data-dir', dir, '--resources', 'configmaps']);
    // The config leaves configmaps to identity, so a plaintext configmap is current: counted, exit 0.
    assert.equal(withResources.code, 0, withResources.stdout + withResources.stderr);
    assert.match(withResources.stdout, /configmaps: 1 values, 1 plaintext, 0 stale, 0 undecryptable/);

    // Rewrite with the new write key, drop the broken value: now everything is current.
    const fresh = buildTransformers(parseEncryptionConfig(NEW, 'new.yaml').config).forResource({ group: '', resource: 'secrets' });
    const rw = openSqliteStore(join(dir, 'store.db'));
    for (const key of [a, p]) {
      const kv = await rw.get(key);
      await rw.update(key, await fresh.toStorage(plain, Buffer.from(key)), kv!.modRevision);
    }
    await rw.delete(t);
    await rw.close();
    const after = await runAtrest(['verify', '--encryption-provider-config', newConfig, '--data-dir', dir]);
    assert.equal(after.code, 0, after.stdout + after.stderr);
    assert.match(after.stdout, /secrets: 2 values, 0 plaintext, 0 stale, 0 undecryptable/);
    assert.match(after.stdout, /aesgcm:k2\s+2/);
    assert.match(after.stdout, /^OK:/m);

    // --textfile: the counts for node_exporter, written whole (0644) and without a temporary file left.
    const promDir = join(dir, 'textfile');
    await mkdir(promDir);
    const prom = join(promDir, 'atrest_verify.prom');
    const withFile = await runAtrest(['verify', '--encryption-provider-config', newConfig, '--data-dir', dir, '--textfile', prom]);
    assert.equal(withFile.code, 0, withFile.stdout + withFile.stderr);
    assert.match(await readFile(prom, 'utf8'), /^atrest_verify_\w+\{[^}]*resource="secrets"[^}]*\} 2$/m);
    assert.equal((await stat(prom)).mode & 0o777, 0o644);
    assert.deepEqual(await readdir(promDir), ['atrest_verify.prom']);
    // A target that cannot be replaced (a directory): verify fails and leaves nothing behind.
    await mkdir(join(promDir, 'taken.prom'));
    const failed = await runAtrest(['verify', '--encryption-provider-config', newConfig, '--data-dir', dir, '--textfile', join(promDir, 'taken.prom')]);
    assert.notEqual(failed.code, 0, failed.stdout + failed.stderr);
    assert.deepEqual((await readdir(promDir)).sort(), ['atrest_verify.prom', 'taken.prom']);

    // Usage and configuration errors exit 2 (1 means values are not current).
    const noStore = await runAtrest(['verify', '--encryption-provider-config', newConfig, '--data-dir', join(dir, 'nothing-here')]);
    assert.equal(noStore.code, 2, noStore.stderr);
    assert.match(noStore.stderr, /no embedded store at .*nothing-here/);
    const noneNamed = await runAtrest(['verify', '--encryption-provider-config', newConfig, '--data-dir', dir, '--resources', ' , ']);
    assert.equal(noneNamed.code, 2, noneNamed.stderr);
    assert.match(noneNamed.stderr, /--resources: no resource named/);
  } finally {
    await cleanup();
  }
});

test('unsafeDeletePath: namespaced and cluster-scoped core kinds; none for other groups', () => {
  assert.equal(unsafeDeletePath('', 'secrets', 'my ns', 'a/b'), '/api/v1/namespaces/my%20ns/secrets/a%2Fb?ignoreStoreReadErrorWithClusterBreakingPotential=true');
  assert.equal(unsafeDeletePath('', 'namespaces', undefined, 'lost'), '/api/v1/namespaces/lost?ignoreStoreReadErrorWithClusterBreakingPotential=true');
  assert.equal(unsafeDeletePath('apps', 'deployments', 'default', 'd'), undefined);
});
