// Properties of configured transformers on full stored values (fast-check): round trip for every
// provider and key size; a changed byte anywhere after the prefix fails aesgcm and secretbox; any
// truncation is a typed error (never a crash or hang); an aesgcm value moved to another storage key
// does not decrypt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { AtrestError } from '../../src/errors.js';
import { buildTransformers } from '../../src/transform/build.js';
import type { EncryptionConfiguration, ProviderConfiguration } from '../../src/config/types.js';
import type { Transformer } from '../../src/transform/types.js';

const RUNS = 100;
const secrets = { group: '', resource: 'secrets' };
const storageKey = fc.stringMatching(/^[a-z0-9-]{1,20}$/).map((n) => Buffer.from(`/registry/secrets/default/${n}`));

function transformerFor(kind: 'aescbc' | 'aesgcm' | 'secretbox', size: number): Transformer {
  const cfg: EncryptionConfiguration = {
    apiVersion: 'apiserver.config.k8s.io/v1',
    kind: 'EncryptionConfiguration',
    resources: [{ resources: ['secrets'], providers: [{ [kind]: { keys: [{ name: 'k', secret: randomBytes(size).toString('base64') }] } } as ProviderConfiguration, { identity: {} }] }],
  };
  return buildTransformers(cfg).forResource(secrets);
}

const providers: Array<['aescbc' | 'aesgcm' | 'secretbox', number]> = [
  ['aescbc', 16], ['aescbc', 24], ['aescbc', 32], ['aesgcm', 16], ['aesgcm', 24], ['aesgcm', 32], ['secretbox', 32],
];

/** Resolves to 'ok' or 'error'; a rejection that is not one of our typed errors fails the test. */
async function outcome(p: Promise<unknown>): Promise<'ok' | 'error'> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof AtrestError, `untyped failure: ${String(err)}`);
    return 'error';
  }
}

test('round trip through every provider and key size', async () => {
  for (const [kind, size] of providers) {
    const t = transformerFor(kind, size);
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 500 }), storageKey, async (p, key) => {
      const r = await t.fromStorage(await t.toStorage(p, key), key);
      assert.deepEqual(r.plaintext, Buffer.from(p));
      assert.equal(r.stale, false);
    }), { numRuns: RUNS / 2 });
  }
});

test('tamper: any changed byte of an aesgcm or secretbox value fails', async () => {
  for (const [kind, size] of [['aesgcm', 32], ['aesgcm', 16], ['secretbox', 32]] as const) {
    const t = transformerFor(kind, size);
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), storageKey, fc.nat(), fc.integer({ min: 1, max: 255 }), async (p, key, at, xor) => {
      const stored = await t.toStorage(p, key);
      const i = at % stored.length;
      stored[i] = stored[i]! ^ xor;
      // a changed prefix byte may turn the value into "plaintext" for the identity entry: never the original
      let plain: Buffer | undefined;
      const o = await outcome(t.fromStorage(stored, key).then((r) => { plain = r.plaintext; }));
      if (o === 'ok') {
        assert.ok(i < `k8s:enc:${kind}:v1:k:`.length, 'only a prefix change can read at all');
        assert.equal(plain?.equals(Buffer.from(p)), false);
      }
    }), { numRuns: RUNS });
  }
});

test('truncation: never a crash or hang; an aescbc value cut to its IV is an error', async () => {
  for (const [kind, size] of providers) {
    const t = transformerFor(kind, size);
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 100 }), storageKey, fc.nat(), async (p, key, cut) => {
      const stored = await t.toStorage(p, key);
      const short = stored.subarray(0, cut % stored.length);
      const o = await outcome(t.fromStorage(short, key));
      if (o === 'ok') {
        // only identity (a cut inside the reserved prefix) or CBC dropping whole blocks can read
        assert.ok(short.length < 8 || kind === 'aescbc', `${kind} read a truncated value of ${short.length} bytes`);
      }
    }), { numRuns: RUNS / 2 });
    if (kind === 'aescbc') {
      const stored = await t.toStorage(Buffer.from('x'), Buffer.from('/k'));
      await assert.rejects(t.fromStorage(stored.subarray(0, 'k8s:enc:aescbc:v1:k:'.length + 16), Buffer.from('/k')), /invalid PKCS7 data \(empty or not padded\)/);
    }
  }
});

test('AAD binding: an aesgcm value moved to another storage key fails; aescbc/secretbox are not bound', async () => {
  const gcm = transformerFor('aesgcm', 32);
  await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 100 }), storageKey, storageKey, async (p, a, b) => {
    fc.pre(!a.equals(b));
    const stored = await gcm.toStorage(p, a);
    await assert.rejects(gcm.fromStorage(stored, b), /cipher: message authentication failed/);
  }), { numRuns: RUNS });
  for (const kind of ['aescbc', 'secretbox'] as const) {
    const t = transformerFor(kind, 32);
    const r = await t.fromStorage(await t.toStorage(Buffer.from('v'), Buffer.from('/a')), Buffer.from('/b'));
    assert.equal(r.plaintext.toString(), 'v');
  }
});
