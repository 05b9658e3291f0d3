// Every non-KMS vector of format.md §5 read through the configured transformers (full etcd values),
// and written again byte-exact through the same prefix chain with the vector's IV/nonce injected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fixedNonceSourceForTests, type NonceSource } from '../../src/crypto/nonce.js';
import { AesCbcTransformer } from '../../src/transform/aescbc.js';
import { AesGcmTransformer } from '../../src/transform/aesgcm.js';
import { SecretboxTransformer } from '../../src/transform/secretbox.js';
import { buildTransformers } from '../../src/transform/build.js';
import { PrefixTransformer, ERR_NO_MATCHING_AES_KEY, ERR_NO_MATCHING_PREFIX, ERR_NO_MATCHING_SECRETBOX_KEY } from '../../src/transform/prefix.js';
import type { EncryptionConfiguration, ProviderConfiguration } from '../../src/config/types.js';
import type { Transformer } from '../../src/transform/types.js';

const vectors = JSON.parse(readFileSync(new URL('../fixtures/spec/vectors.json', import.meta.url), 'utf8'));
const secrets = { group: '', resource: 'secrets' };

type Kind = 'aescbc' | 'aesgcm' | 'secretbox';
interface Case { kind: Kind; keyB64: string; keyName: string; aad: string; plaintext: string; value: Buffer; nonce: Buffer }

const d = vectors.derived;
const gcmBody = Buffer.from(d.aesgcm.etcdValueHex, 'hex').subarray('k8s:enc:aesgcm:v1:key1:'.length);
const cases: Case[] = [
  { kind: 'aescbc', keyB64: d.aescbc.keyB64, keyName: d.aescbc.keyName, aad: '/registry/secrets/default/any', plaintext: d.aescbc.plaintext, value: Buffer.from(d.aescbc.etcdValueHex, 'hex'), nonce: Buffer.from(d.aescbc.ivHex, 'hex') },
  { kind: 'aesgcm', keyB64: d.aesgcm.keyB64, keyName: d.aesgcm.keyName, aad: d.aesgcm.aad, plaintext: d.aesgcm.plaintext, value: Buffer.from(d.aesgcm.etcdValueHex, 'hex'), nonce: gcmBody.subarray(0, 12) },
  { kind: 'secretbox', keyB64: d.secretbox.keyB64, keyName: d.secretbox.keyName, aad: '/registry/secrets/default/any', plaintext: d.secretbox.plaintext, value: Buffer.from(d.secretbox.etcdValueHex, 'hex'), nonce: Buffer.from(d.secretbox.nonceHex, 'hex') },
];

function configFor(c: Case, extraKeysFirst = false): EncryptionConfiguration {
  const keys = [{ name: c.keyName, secret: c.keyB64 }];
  if (extraKeysFirst) keys.unshift({ name: 'newer', secret: Buffer.alloc(32, 9).toString('base64') });
  return { apiVersion: 'apiserver.config.k8s.io/v1', kind: 'EncryptionConfiguration', resources: [{ resources: ['secrets'], providers: [{ [c.kind]: { keys } } as ProviderConfiguration] }] };
}

function chainWithNonce(c: Case, nonceSource: NonceSource): Transformer {
  const key = Buffer.from(c.keyB64, 'base64');
  const inner = c.kind === 'aescbc' ? new AesCbcTransformer(key, c.keyName, { nonceSource })
    : c.kind === 'aesgcm' ? new AesGcmTransformer(key, c.keyName, { nonceSource })
      : new SecretboxTransformer(key, c.keyName, { nonceSource });
  const keyList = new PrefixTransformer([{ prefix: Buffer.from(`${c.keyName}:`), transformer: inner }], {
    defaultError: c.kind === 'secretbox' ? ERR_NO_MATCHING_SECRETBOX_KEY : ERR_NO_MATCHING_AES_KEY,
  });
  return new PrefixTransformer([{ prefix: Buffer.from(`k8s:enc:${c.kind}:v1:`), transformer: keyList }], { defaultError: ERR_NO_MATCHING_PREFIX, nameStorageKey: true });
}

for (const c of cases) {
  test(`${c.kind} vector: read through buildTransformers, fresh with its key first, stale behind a newer key`, async () => {
    const aad = Buffer.from(c.aad);
    const r = await buildTransformers(configFor(c)).forResource(secrets).fromStorage(c.value, aad);
    assert.equal(r.plaintext.toString(), c.plaintext);
    assert.equal(r.stale, false);
    assert.deepEqual(r.origin, { provider: c.kind, name: c.keyName });
    const later = await buildTransformers(configFor(c, true)).forResource(secrets).fromStorage(c.value, aad);
    assert.equal(later.plaintext.toString(), c.plaintext);
    assert.equal(later.stale, true);
  });

  test(`${c.kind} vector: written again byte-exact through the prefix chain with the vector's nonce`, async () => {
    const out = await chainWithNonce(c, fixedNonceSourceForTests(c.nonce)).toStorage(Buffer.from(c.plaintext), Buffer.from(c.aad));
    assert.deepEqual(out, c.value);
  });
}

test('aesgcm k8s raw vector behind a key prefix equals the derived full value', () => {
  assert.deepEqual(Buffer.from(vectors.k8s.aesgcm_raw_legacy.ciphertextHex, 'hex'), gcmBody);
});
