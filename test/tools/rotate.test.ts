// `atrest rotate` against a real etcd, the local-backend plugin and `atrest serve`: the whole
// lifecycle with --migrate-with rewrite, a restored backup that makes retirement refuse (under an old
// version still active, and under one retired already: restore it first), and a rerun after an
// interruption (see rotate-fixture.ts for the setting).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { localBackend } from '../../src/plugin/backends/local.js';
import { runCli } from '../helpers/cli.js';
import { etcdAvailable } from '../helpers/etcd.js';
import { apiRequest, kmsV2ProviderLine } from '../helpers/server.js';
import { inProcessLogger } from '../helpers/test-log.js';
import { PREFIX, kmsTransformers, seedSecrets, startRotateWorld, type RotateWorld } from './rotate-fixture.js';

const ctx = { log: inProcessLogger('rotate-test') };

describe('atrest rotate', { skip: !etcdAvailable() && 'needs etcd' }, () => {
  let w: RotateWorld;
  /** s5 as first written, under v1: a backup restored after v1 was retired. */
  let v1Backup: Uint8Array;
  before(async () => {
    // Two API servers on the etcd: rotate waits for both.
    w = await startRotateWorld({ servers: 2 });
    await seedSecrets(w, 40);
    v1Backup = (await (await w.store()).get(`${PREFIX}/secrets/default/s5`))!.value;
  });
  after(async () => {
    await w?.close();
  });

  const states = async (): Promise<string[]> => (await localBackend.listKeys!({ keyFile: w.keyFile }, ctx)).map((v) => `v${v.version}:${v.state}`);

  it('--migrate-with rewrite: new version, servers on it, values re-encrypted, old version retired; a rerun with --finish has nothing to do', async () => {
    const r = await w.rotate(['--migrate-with', 'rewrite']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^rotation complete: current KEK version local:v2:[0-9a-f]{16}; retired local:v1:[0-9a-f]{16}\n$/);
    for (const n of ['1/5', '2/5', '3/5', '4/5', '5/5']) assert.match(r.stderr, new RegExp(`\\[${n}\\]`));
    assert.match(r.stderr, /every API server \(2\) writes with the new key_id/);
    assert.deepEqual(await states(), ['v1:retired', 'v2:current']);
    const v2 = (await localBackend.listKeys!({ keyFile: w.keyFile }, ctx))[1]!.keyId;
    const v = await apiRequest(w.api, 'GET', '/api/v1/namespaces/default/secrets/s7');
    assert.equal(Buffer.from(v.json<{ data: { v: string } }>().data.v, 'base64').toString(), 'value-7');
    assert.match(await readFile(w.keyFile, 'utf8'), /"retired"/);
    const raw = await (await w.store()).get(`${PREFIX}/secrets/default/s7`);
    assert.ok(raw?.value.includes(Buffer.from(v2)), 'the stored value names the new key_id');

    const again = await w.rotate(['--finish']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^nothing to do: local:v2:/);
    assert.deepEqual(await states(), ['v1:retired', 'v2:current']);
  });

  it('a value under the old key restored from a backup makes retirement refuse; each step run alone and a rerun finish the job', async () => {
    const store = await w.store();
    const key = `${PREFIX}/secrets/default/s3`;
    const backup = (await store.get(key))!.value; // under v2, the current version
    // Interrupted after step 1: only the new version exists.
    const first = await w.rotate(['--step', 'rotate-kek']);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^step rotate-kek done; current KEK version local:v3:/);
    assert.deepEqual(await states(), ['v1:retired', 'v2:active', 'v3:current']);
    // A rerun of step 1 does not make another version: the rotation is in progress.
    const again = await w.rotate(['--step', 'rotate-kek']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /a rotation is in progress: local:v2:\S+ still active/);
    assert.deepEqual(await states(), ['v1:retired', 'v2:active', 'v3:current']);
    for (const step of ['wait', 'migrate']) {
      const r = await w.rotate(['--step', step, '--migrate-with', 'rewrite']);
      assert.equal(r.code, 0, `${step}: ${r.stderr}`);
    }
    // The backup is restored over s3: a value under v2 again.
    const now = (await store.get(key))!;
    await store.update(key, backup, now.modRevision);
    const refused = await w.rotate(['--step', 'retire']);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`1 stored values are still under local:v2:\\S+ \\(secrets: 1\\), e\\.g\\. ${key}: not retiring`));
    assert.match(refused.stderr, /what to do: .*restored from a backup: run atrest rotate again/);
    assert.deepEqual(await states(), ['v1:retired', 'v2:active', 'v3:current'], 'nothing retired');
    // The API server still reads it (v2 is active).
    const read = await apiRequest(w.api, 'GET', '/api/v1/namespaces/default/secrets/s3');
    assert.equal(Buffer.from(read.json<{ data: { v: string } }>().data.v, 'base64').toString(), 'value-3');

    // Another backup, from before the first rotation, over s5: under v1, which is retired already.
    const s5 = `${PREFIX}/secrets/default/s5`;
    await store.update(s5, v1Backup, (await store.get(s5))!.modRevision);
    const v1 = (await localBackend.listKeys!({ keyFile: w.keyFile }, ctx))[0]!.keyId;
    const needsV1 = await w.rotate(['--step', 'retire']);
    assert.equal(needsV1.code, 1, needsV1.stderr);
    assert.match(needsV1.stderr, new RegExp(`1 stored values need a KEK version that is already retired \\(e\\.g\\. ${s5}\\): the KMS plugin refuses to decrypt them until it is restored; not retiring local:v2:`));
    const restoreCommand = `atrest kms-plugin restore-key --backend local --key-file ${w.keyFile} --key-id ${v1}`;
    assert.ok(needsV1.stderr.includes(`what to do: they are not lost: restore the version (${restoreCommand}), then run atrest rotate again`), needsV1.stderr);
    assert.doesNotMatch(needsV1.stderr, /delete/);
    assert.deepEqual(await states(), ['v1:retired', 'v2:active', 'v3:current'], 'nothing retired');
    // The command it names, as pasted; then the rotation takes v1 along.
    const restored = await runCli(restoreCommand.split(' ').slice(1));
    assert.equal(restored.code, 0, restored.stderr);
    assert.deepEqual(await states(), ['v1:active', 'v2:active', 'v3:current']);

    const finish = await w.rotate(['--migrate-with', 'rewrite']);
    assert.equal(finish.code, 0, finish.stderr);
    assert.match(finish.stderr, /a rotation is in progress/);
    assert.match(finish.stderr, /2 values under an old key_id \(secrets: 2\)/);
    assert.match(finish.stdout, /^rotation complete: current KEK version local:v3:\S+; retired local:v1:\S+, local:v2:/);
    assert.deepEqual(await states(), ['v1:retired', 'v2:retired', 'v3:current']);
    const back = await apiRequest(w.api, 'GET', '/api/v1/namespaces/default/secrets/s5');
    assert.equal(Buffer.from(back.json<{ data: { v: string } }>().data.v, 'base64').toString(), 'value-5');
  });

  it('with StorageVersionMigration (the default): one per resource with old-key values, waited to Succeeded, then retirement', async () => {
    const r = await w.rotate([]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^rotation complete: current KEK version local:v4:\S+; retired local:v3:/);
    const name = /created StorageVersionMigration (atrest-rotate-[0-9a-f]{8}-secrets)/.exec(r.stderr)?.[1];
    assert.ok(name, r.stderr);
    assert.match(r.stderr, new RegExp(`StorageVersionMigration ${name} Succeeded`));
    const svm = (await apiRequest(w.api, 'GET', `/apis/storagemigration.k8s.io/v1beta1/storageversionmigrations/${name}`)).json<{ spec: unknown; status: { conditions: Array<{ type: string; status: string }> } }>();
    assert.deepEqual(svm.spec, { resource: { group: '', resource: 'secrets' } });
    assert.ok(svm.status.conditions.some((c) => c.type === 'Succeeded' && c.status === 'True'));
    assert.deepEqual(await states(), ['v1:retired', 'v2:retired', 'v3:retired', 'v4:current']);
  });

  it('usage problems exit 2; a wait that cannot finish exits 3 saying what to do, and the rerun finishes the rotation', async () => {
    const noKubeconfig = await w.rotate(['--kubeconfig', `${w.dir}/missing.kubeconfig`]);
    assert.equal(noKubeconfig.code, 2, noKubeconfig.stderr);
    assert.match(noKubeconfig.stderr, /missing\.kubeconfig: does not exist\n {2}what to do: give --kubeconfig/);
    // A key file the plugin does not serve: refused before any version is made.
    const otherKeyFile = `${w.dir}/other-kek.json`;
    await localBackend.initKey({ keyFile: otherKeyFile }, ctx);
    const wrongBackend = await w.rotate(['--key-file', otherKeyFile]);
    assert.equal(wrongBackend.code, 2, wrongBackend.stderr);
    assert.match(wrongBackend.stderr, /no kms v2 write provider of the selected resources is served by this local backend \(providers: atrest \(secrets\): sha256:/);
    assert.deepEqual((await localBackend.listKeys!({ keyFile: otherKeyFile }, ctx)).map((v) => v.state), ['current'], 'no version made');
    const badStep = await w.rotate(['--step', 'everything']);
    assert.equal(badStep.code, 2, badStep.stderr);
    assert.deepEqual(await states(), ['v1:retired', 'v2:retired', 'v3:retired', 'v4:current'], 'nothing done');

    // An API server that is not there: the new version is made, the wait gives up.
    const stuck = await w.rotate(['--server', 'https://127.0.0.1:1', '--timeout', '2s']);
    assert.equal(stuck.code, 3, stuck.stderr);
    assert.match(stuck.stderr, /https:\/\/127\.0\.0\.1:1 does not write with the new key_id yet \(not reachable\)\n {2}what to do: .*then run atrest rotate again/);
    assert.deepEqual(await states(), ['v1:retired', 'v2:retired', 'v3:retired', 'v4:active', 'v5:current']);
    const rerun = await w.rotate([]);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stdout, /^rotation complete: current KEK version local:v5:\S+; retired local:v4:/);
  });

  it('--resources narrows the migration, never the retirement check: a resource left out with values under the old version makes it refuse', async () => {
    // A configuration in which configmaps are under the same KMS provider as secrets.
    const both = join(w.dir, 'both.yaml');
    await writeFile(both, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
${kmsV2ProviderLine(join(w.dir, 'kms.sock'))}
      - identity: {}
`);
    const { store, close } = await kmsTransformers(both);
    try {
      await store(await w.store()).create(`${PREFIX}/configmaps/default/c1`, Buffer.from(JSON.stringify({ kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'c1', namespace: 'default' }, data: { k: 'v' } })));
    } finally {
      await close();
    }
    const narrowed = await w.rotate(['--encryption-provider-config', both, '--resources', 'secrets', '--migrate-with', 'rewrite']);
    assert.equal(narrowed.code, 1, narrowed.stderr);
    assert.match(narrowed.stderr, /1 stored values are still under local:v5:\S+ \(configmaps: 1\), e\.g\. \/registry\/configmaps\/default\/c1: not retiring/);
    assert.deepEqual(await states(), ['v1:retired', 'v2:retired', 'v3:retired', 'v4:retired', 'v5:active', 'v6:current'], 'nothing retired');
    const whole = await w.rotate(['--encryption-provider-config', both, '--migrate-with', 'rewrite']);
    assert.equal(whole.code, 0, whole.stderr);
    assert.match(whole.stdout, /^rotation complete: current KEK version local:v6:\S+; retired local:v5:/);
  });
});
