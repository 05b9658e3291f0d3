// The operator guide's rotations (docs/operator-guide.md), end to end like the task page test: the
// built `atrest kms-plugin` and `atrest serve` on a real etcd, the real kubectl and its
// `get | replace` pipeline, etcdctl for the raw values and `atrest verify -o json` after each step:
// KEK rotation under kms v1 (nothing becomes stale: the old version must stay; a renamed provider
// forces the rewrap), migration from
// kms v1 to kms v2 (v2 first under a new name, restart, re-encrypt, drop v1), and KEK rotation
// under kms v2 (the new key_id makes every value stale until it is re-encrypted).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import { atrestVerify, etcdctlValues, KmsPluginProcess, replaceAllSecrets, ServeProcess, type VerifyResult } from '../helpers/task-page.js';

const PREFIX = '/kubernetes.io';
const SECRETS = ['db-password', 'api-token', 'tls-key'];

const header = 'apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n    providers:\n';
const kmsV1 = (endpoint: string, name = 'myKmsPlugin') => `      - kms:\n          name: ${name}\n          endpoint: ${endpoint}\n          cachesize: 100\n`;
// kms names must be unique once a v2 provider is in the file: the v2 provider gets its own.
const kmsV2 = (endpoint: string) => `      - kms:\n          apiVersion: v2\n          name: myKmsPluginV2\n          endpoint: ${endpoint}\n          timeout: 3s\n`;
const identity = '      - identity: {}\n';

const hashOf = (keyId: string): string => `sha256:${createHash('sha256').update(keyId).digest('hex')}`;

/**
 * The local backend's key_id named by a kms v1 value: after `k8s:enc:kms:v1:<name>:` come u16be(len)
 * and the EDEK, which starts 0x01 ‖ u32be(KEK version) ‖ 8-byte id (docs/deploy/README.md).
 */
function v1KeyIdOf(value: Buffer, name: string): string {
  const edek = value.subarray(`k8s:enc:kms:v1:${name}:`.length + 2);
  assert.equal(edek[0], 0x01, 'local backend ciphertext format');
  return `local:v${edek.readUInt32BE(1)}:${edek.subarray(5, 13).toString('hex')}`;
}

function counts(r: VerifyResult): { code: number | null; ok: boolean; total: number; stale: number; undecryptable: number } {
  return { code: r.code, ok: r.ok, total: r.secrets.total, stale: r.secrets.stale, undecryptable: r.secrets.undecryptable.length };
}

describe('the operator guide: KEK rotation, kms v1 → v2 migration', { skip: (!kubectlAvailable() || !etcdAvailable()) && 'needs kubectl and etcd' }, () => {
  let dir: string;
  let etcd: EtcdCluster;
  let plugin: KmsPluginProcess;
  let serve: ServeProcess | undefined;
  let kubectl: Kubectl;
  let endpoint: string;
  /** The key_id of the KEK version made by the kms v1 rotation step. */
  let rotatedKeyId = '';
  const configPath = () => join(dir, 'encryption-config.yaml');

  async function restartWith(config: string): Promise<void> {
    writeFileSync(configPath(), config);
    if (serve) assert.equal(await serve.stop(), 0, serve.log());
    serve = await ServeProcess.start(['--etcd-servers', endpoint, '--etcd-prefix', PREFIX, '--data-dir', join(dir, 'data'), '--encryption-provider-config', configPath()]);
    kubectl ??= new Kubectl(serve.kubeconfig);
  }

  const verify = () => atrestVerify(configPath(), endpoint, PREFIX);
  const replaceAll = () => replaceAllSecrets(serve?.kubeconfig as string, join(dir, 'home'));
  const raw = () => etcdctlValues(endpoint, `${PREFIX}/secrets/`);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'atrest-rotation-'));
    // A short refresh so the plugin notices rotate-key quickly (default 5 s).
    [etcd, plugin] = await Promise.all([startEtcdCluster(1), KmsPluginProcess.start(dir, ['--refresh-interval', '100'])]);
    endpoint = etcd.endpoints[0] as string;
  });

  after(async () => {
    kubectl?.cleanup();
    if (serve) assert.equal(await serve.stop(), 0, serve.log());
    if (plugin) assert.equal(await plugin.stop(), 0, plugin.log());
    await etcd?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('kms v1: secrets are written with myKmsPlugin', async () => {
    await restartWith(header + kmsV1(plugin.endpoint) + identity);
    for (const name of SECRETS) await kubectl.ok(['create', 'secret', 'generic', name, `--from-literal=v=${name}-value`]);
    const r = await verify();
    assert.deepEqual(counts(r), { code: 0, ok: true, total: 3, stale: 0, undecryptable: 0 });
    assert.deepEqual(r.secrets.writers, { 'kms v1:myKmsPlugin': 3 });
  });

  test('KEK rotation under kms v1: new writes use the new KEK version, old values stay readable and are not stale', async () => {
    const newKeyId = await plugin.rotateKey();
    rotatedKeyId = newKeyId;
    assert.notEqual(newKeyId, plugin.keyId);
    await plugin.waitForLog(/"event":"rotation"/);
    await kubectl.ok(['create', 'secret', 'generic', 'after-v1-rotation', '--from-literal=v=x']);
    const values = await raw();
    for (const name of SECRETS) assert.equal(v1KeyIdOf(values.get(`${PREFIX}/secrets/default/${name}`) as Buffer, 'myKmsPlugin'), plugin.keyId, `${name}: DEK wrapped by KEK v1`);
    assert.equal(v1KeyIdOf(values.get(`${PREFIX}/secrets/default/after-v1-rotation`) as Buffer, 'myKmsPlugin'), newKeyId, 'a new write: DEK wrapped by KEK v2');
    // kms v1 values name no key_id, so verify cannot tell KEK versions apart: all current.
    const r = await verify();
    assert.deepEqual(counts(r), { code: 0, ok: true, total: 4, stale: 0, undecryptable: 0 });
    for (const name of SECRETS) {
      const v = await kubectl.ok(['get', 'secret', name, '-o', 'jsonpath={.data.v}']);
      assert.equal(Buffer.from(v, 'base64').toString(), `${name}-value`, `${name} still decrypts (old KEK version kept)`);
    }
  });

  test('KEK rotation under kms v1, forced: a renamed kms v1 provider first makes every value stale; the pipeline rewraps all with the new KEK', async () => {
    await restartWith(header + kmsV1(plugin.endpoint, 'myKmsPlugin2') + kmsV1(plugin.endpoint) + identity);
    const mid = await verify();
    assert.deepEqual(counts(mid), { code: 1, ok: false, total: 4, stale: 4, undecryptable: 0 });
    assert.deepEqual(mid.secrets.writers, { 'kms v1:myKmsPlugin': 4 });
    await replaceAll();
    const done = await verify();
    assert.deepEqual(counts(done), { code: 0, ok: true, total: 4, stale: 0, undecryptable: 0 });
    assert.deepEqual(done.secrets.writers, { 'kms v1:myKmsPlugin2': 4 });
    for (const [key, value] of await raw()) assert.equal(v1KeyIdOf(value, 'myKmsPlugin2'), rotatedKeyId, `${key}: DEK wrapped by the current KEK`);
  });

  test('kms v1 → v2: v2 first under its own name, restart, re-encrypt, then drop v1', async () => {
    await restartWith(header + kmsV2(plugin.endpoint) + kmsV1(plugin.endpoint, 'myKmsPlugin2') + identity);
    const mid = await verify();
    assert.deepEqual(counts(mid), { code: 1, ok: false, total: 4, stale: 4, undecryptable: 0 });
    assert.deepEqual(mid.secrets.writers, { 'kms v1:myKmsPlugin2': 4 });
    await replaceAll();
    const done = await verify();
    assert.deepEqual(counts(done), { code: 0, ok: true, total: 4, stale: 0, undecryptable: 0 });
    assert.deepEqual(done.writers, { 'kms v2:myKmsPluginV2': 4 });
    for (const [key, value] of await raw()) assert.ok(value.toString('latin1').startsWith('k8s:enc:kms:v2:myKmsPluginV2:'), `${key} is kms v2`);

    await restartWith(header + kmsV2(plugin.endpoint) + identity);
    assert.deepEqual(counts(await verify()), { code: 0, ok: true, total: 4, stale: 0, undecryptable: 0 });
    const v = await kubectl.ok(['get', 'secret', 'db-password', '-o', 'jsonpath={.data.v}']);
    assert.equal(Buffer.from(v, 'base64').toString(), 'db-password-value');
  });

  test('KEK rotation under kms v2: the new key_id makes every value stale until the pipeline re-encrypts it', async () => {
    const before = await verify();
    const oldLabel = Object.keys(before.secrets.writers);
    assert.equal(oldLabel.length, 1);
    const newKeyId = await plugin.rotateKey();
    await plugin.waitForLog(new RegExp(`"event":"rotation","keyIdHash":"${hashOf(newKeyId)}"`));
    // kube-apiserver (and atrest serve) poll Status every minute; a restart picks the new key_id up at once.
    await restartWith(header + kmsV2(plugin.endpoint) + identity);
    const newLabel = `kms v2:myKmsPluginV2:${hashOf(newKeyId)}`;
    await kubectl.ok(['create', 'secret', 'generic', 'after-v2-rotation', '--from-literal=v=y']);

    const mid = await verify();
    assert.deepEqual(counts(mid), { code: 1, ok: false, total: 5, stale: 4, undecryptable: 0 });
    assert.deepEqual(mid.secrets.writers, { [oldLabel[0] as string]: 4, [newLabel]: 1 });
    await replaceAll();
    const done = await verify();
    assert.deepEqual(counts(done), { code: 0, ok: true, total: 5, stale: 0, undecryptable: 0 });
    assert.deepEqual(done.secrets.writers, { [newLabel]: 5 });
  });
});
