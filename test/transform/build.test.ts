// buildTransformers: provider lists → prefix chains, kms entries through the factory (numbered over
// the file), unlisted resources → identity, kube-apiserver's construction-time errors (format.md §3.3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { buildTransformers, kmsPrefix } from '../../src/transform/build.js';
import { TransformError, TransformerConfigError } from '../../src/transform/errors.js';
import type { EncryptionConfiguration, KMSConfiguration, ProviderConfiguration } from '../../src/config/types.js';
import type { KmsTransformerFactory, TransformResult, Transformer } from '../../src/transform/types.js';

const secrets = { group: '', resource: 'secrets' };
const configmaps = { group: '', resource: 'configmaps' };
const deployments = { group: 'apps', resource: 'deployments' };
const ctx = (name = 's1') => Buffer.from(`/registry/secrets/default/${name}`);
const b64 = (n: number) => randomBytes(n).toString('base64');

function config(...resources: Array<[string[], ProviderConfiguration[]]>): EncryptionConfiguration {
  return {
    apiVersion: 'apiserver.config.k8s.io/v1',
    kind: 'EncryptionConfiguration',
    resources: resources.map(([r, providers]) => ({ resources: r, providers })),
  };
}

function kmsCfg(name: string, apiVersion = 'v2'): { kms: KMSConfiguration } {
  return { kms: { apiVersion, name, endpoint: 'unix:///tmp/none.sock', timeoutMs: 3000 } };
}

/** An in-process stand-in for a KMS envelope: reverses the bytes, records its construction. */
function fakeKms(): { factory: KmsTransformerFactory; built: Array<[string, number]> } {
  const built: Array<[string, number]> = [];
  const factory: KmsTransformerFactory = (cfg, index) => {
    built.push([cfg.name, index]);
    const t: Transformer = {
      async toStorage(p) { return Buffer.from(p).reverse(); },
      async fromStorage(s): Promise<TransformResult> {
        return { plaintext: Buffer.from(s).reverse(), stale: false, origin: { provider: 'kms', name: cfg.name, kmsApiVersion: cfg.apiVersion as 'v1' | 'v2' } };
      },
    };
    return t;
  };
  return { factory, built };
}

async function assertConfigError(cfg: EncryptionConfiguration, message: string, code = 'TRANSFORMER_CONFIG_INVALID'): Promise<void> {
  assert.throws(() => buildTransformers(cfg), (err: unknown) => {
    assert.ok(err instanceof TransformerConfigError, String(err));
    assert.equal(err.message, message);
    assert.equal(err.code, code);
    return true;
  });
}

test('each provider kind writes its prefix and reads back; unlisted resources are identity', async () => {
  const set = buildTransformers(config(
    [['secrets'], [{ aesgcm: { keys: [{ name: 'g', secret: b64(32) }] } }]],
    [['configmaps'], [{ secretbox: { keys: [{ name: 's', secret: b64(32) }] } }]],
    [['deployments.apps'], [{ aescbc: { keys: [{ name: 'c', secret: b64(24) }] } }]],
  ));
  const cases: Array<[typeof secrets, string]> = [[secrets, 'k8s:enc:aesgcm:v1:g:'], [configmaps, 'k8s:enc:secretbox:v1:s:'], [deployments, 'k8s:enc:aescbc:v1:c:']];
  for (const [gr, prefix] of cases) {
    const t = set.forResource(gr);
    assert.equal(set.forResource(gr), t, 'chains are built once per resource');
    const stored = await t.toStorage(Buffer.from('data'), ctx());
    assert.equal(stored.subarray(0, prefix.length).toString(), prefix);
    const r = await t.fromStorage(stored, ctx());
    assert.equal(r.plaintext.toString(), 'data');
    assert.equal(r.stale, false);
  }
  const pods = set.forResource({ group: '', resource: 'pods' });
  assert.deepEqual(await pods.toStorage(Buffer.from('plain'), ctx()), Buffer.from('plain'));
  await assert.rejects(pods.fromStorage(Buffer.from('k8s:enc:aesgcm:v1:g:xxxx'), ctx()), (err: unknown) => {
    assert.ok(err instanceof TransformError);
    assert.equal(err.message, 'cannot decrypt the value of storage key "/registry/secrets/default/s1": identity transformer tried to read encrypted data');
    return true;
  });
  await set.close();
});

test('wildcards: group/* and *.* pick up resources without an exact rule', async () => {
  const set = buildTransformers(config(
    [['secrets'], [{ aesgcm: { keys: [{ name: 'exact', secret: b64(16) }] } }]],
    [['*.apps'], [{ aescbc: { keys: [{ name: 'apps', secret: b64(16) }] } }]],
    [['*.*'], [{ secretbox: { keys: [{ name: 'all', secret: b64(32) }] } }]],
  ));
  const prefixOf = async (gr: { group: string; resource: string }) => (await set.forResource(gr).toStorage(Buffer.from('x'), ctx())).subarray(0, 30).toString('latin1');
  assert.match(await prefixOf(secrets), /^k8s:enc:aesgcm:v1:exact:/);
  assert.match(await prefixOf(deployments), /^k8s:enc:aescbc:v1:apps:/);
  assert.match(await prefixOf(configmaps), /^k8s:enc:secretbox:v1:all:/);
  // one chain per rule, however many resource names a wildcard answers for
  assert.equal(set.forResource(configmaps), set.forResource({ group: 'example.com', resource: 'widgets' }));
});

test('kms entries: factory called once per entry with the file-wide kms index; prefixes v1 and v2', async () => {
  const kms = fakeKms();
  const set = buildTransformers(config(
    [['secrets'], [kmsCfg('first', 'v2'), { identity: {} }]],
    [['configmaps'], [{ identity: {} }, kmsCfg('second', 'v1'), kmsCfg('third', 'v2')]],
  ), { kms: kms.factory });
  assert.deepEqual(kms.built, [['first', 0], ['second', 1], ['third', 2]]);
  const s = await set.forResource(secrets).toStorage(Buffer.from('abc'), ctx());
  assert.equal(s.toString(), 'k8s:enc:kms:v2:first:cba');
  const r = await set.forResource(secrets).fromStorage(s, ctx());
  assert.deepEqual([r.plaintext.toString(), r.stale, r.origin.name], ['abc', false, 'first']);
  const cm = set.forResource(configmaps);
  const old = await cm.fromStorage(Buffer.from('k8s:enc:kms:v1:second:zyx'), ctx());
  assert.deepEqual([old.plaintext.toString(), old.stale], ['xyz', true]);
  assert.equal(kmsPrefix({ apiVersion: 'v1', name: 'n' }), 'k8s:enc:kms:v1:n:');
});

test('a resource listed in two entries reads through both provider lists, in entry order', async () => {
  const gcm = { aesgcm: { keys: [{ name: 'a', secret: b64(32) }] } };
  const cbc = { aescbc: { keys: [{ name: 'b', secret: b64(32) }] } };
  const both = buildTransformers(config([['secrets'], [gcm]], [['secrets', 'configmaps'], [cbc]]));
  const onlyCbc = buildTransformers(config([['secrets'], [cbc]]));
  const v = await onlyCbc.forResource(secrets).toStorage(Buffer.from('old'), ctx());
  const r = await both.forResource(secrets).fromStorage(v, ctx());
  assert.deepEqual([r.plaintext.toString(), r.stale], ['old', true]);
  assert.match((await both.forResource(secrets).toStorage(Buffer.from('n'), ctx())).toString('latin1'), /^k8s:enc:aesgcm:v1:a:/);
});

test('kms without a factory is a clear configuration error; unsupported kms apiVersion', async () => {
  assert.throws(() => buildTransformers(config([['secrets'], [kmsCfg('p', 'v2')]])), (err: unknown) => {
    assert.ok(err instanceof TransformerConfigError);
    assert.equal(err.code, 'KMS_CLIENT_REQUIRED');
    assert.match(err.message, /kms v2 provider "p" needs a KMS plugin connection/);
    return true;
  });
  assert.throws(() => buildTransformers(config([['secrets'], [kmsCfg('p', 'v3')]]), { kms: fakeKms().factory }),
    /could not configure KMS plugin "p", unsupported KMS API version "v3"/);
});

test('construction-time errors of format.md §3.3, never echoing a secret', async () => {
  await assertConfigError(config([['secrets'], [{ aesgcm: { keys: [] } }]]), 'aes provider has no valid keys');
  await assertConfigError(config([['secrets'], [{ aescbc: { keys: [] } }]]), 'aes provider has no valid keys');
  await assertConfigError(config([['secrets'], [{ secretbox: { keys: [] } }]]), 'secretbox provider has no valid keys');
  await assertConfigError(config([['secrets'], [{ aesgcm: { keys: [{ name: 'a', secret: b64(16) }, { name: '', secret: b64(16) }] } }]]), 'key with invalid name provided');
  await assertConfigError(config([['secrets'], [{ aescbc: { keys: [{ name: 'k1', secret: '' }] } }]]), 'key k1 has no provided secret');
  await assertConfigError(config([['secrets'], [{ aescbc: { keys: [{ name: 'k1', secret: 'not*base64' }] } }]]), 'could not obtain secret for named key k1: illegal base64 data');
  const odd = b64(20);
  await assertConfigError(config([['secrets'], [{ aesgcm: { keys: [{ name: 'k1', secret: odd }] } }]]), 'error while creating cipher for named key k1: crypto/aes: invalid key size 20');
  await assertConfigError(config([['secrets'], [{ secretbox: { keys: [{ name: 'k1', secret: b64(16) }] } }]]), 'expected key size 32 for secretbox provider, got 16');
  // name/secret checks run over every key before any secret is decoded
  await assertConfigError(config([['secrets'], [{ aescbc: { keys: [{ name: 'bad', secret: '!!!!' }, { name: 'k2', secret: '' }] } }]]), 'key k2 has no provided secret');
});

test('key sizes 16, 24 and 32 all work for aescbc and aesgcm', async () => {
  for (const kind of ['aescbc', 'aesgcm'] as const) {
    for (const n of [16, 24, 32]) {
      const p = { [kind]: { keys: [{ name: `k${n}`, secret: b64(n) }] } } as ProviderConfiguration;
      const t = buildTransformers(config([['secrets'], [p]])).forResource(secrets);
      const r = await t.fromStorage(await t.toStorage(Buffer.from(`${kind}-${n}`), ctx()), ctx());
      assert.equal(r.plaintext.toString(), `${kind}-${n}`);
      assert.deepEqual(r.origin, { provider: kind, name: `k${n}` });
    }
  }
});
