// Model-based property of the prefix chain (format.md §0) over random configurations: a value
// written with configuration A is read with configuration B exactly when B holds A's write
// provider kind with A's write key (or identity, for plaintext); the read is stale exactly when
// the provider that read it is not B's first or the key is not that provider's first; the origin
// names that provider and key; a miss is a typed error naming the storage key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { buildTransformers } from '../../src/transform/build.js';
import { TransformError } from '../../src/transform/errors.js';
import type { EncryptionConfiguration, ProviderConfiguration } from '../../src/config/types.js';

type Kind = 'aescbc' | 'aesgcm' | 'secretbox';
interface ModelProvider { kind: Kind | 'identity'; keys: string[] }

// A fixed pool of named keys: a name always means the same secret, as in a real rotation.
const KEY_NAMES = ['k0', 'k1', 'k2', 'k3', 'k4'];
const SECRETS = new Map(KEY_NAMES.map((n) => [n, randomBytes(32).toString('base64')]));
const secrets = { group: '', resource: 'secrets' };
const ctx = Buffer.from('/registry/secrets/ns/model');

const provider: fc.Arbitrary<ModelProvider> = fc.oneof(
  fc.constant<ModelProvider>({ kind: 'identity', keys: [] }),
  fc.record({
    kind: fc.constantFrom<Kind>('aescbc', 'aesgcm', 'secretbox'),
    keys: fc.uniqueArray(fc.constantFrom(...KEY_NAMES), { minLength: 1, maxLength: 3 }),
  }),
);
const providers = fc.array(provider, { minLength: 1, maxLength: 5 });

function toConfig(list: ModelProvider[]): EncryptionConfiguration {
  const ps: ProviderConfiguration[] = list.map((p) => p.kind === 'identity'
    ? { identity: {} }
    : { [p.kind]: { keys: p.keys.map((name) => ({ name, secret: SECRETS.get(name)! })) } } as ProviderConfiguration);
  return { apiVersion: 'apiserver.config.k8s.io/v1', kind: 'EncryptionConfiguration', resources: [{ resources: ['secrets'], providers: ps }] };
}

/** Which provider (index) and key (index) of `reader` reads what `writer[0]` wrote, per the model. */
function expectedReader(writer: ModelProvider, reader: ModelProvider[]): { provider: number; key: number } | undefined {
  for (let i = 0; i < reader.length; i++) {
    const p = reader[i]!;
    if (p.kind !== writer.kind) continue;
    if (p.kind === 'identity') return { provider: i, key: 0 };
    const k = p.keys.indexOf(writer.keys[0]!);
    if (k >= 0) return { provider: i, key: k };
  }
  return undefined;
}

test('model: read succeeds, is stale and names its origin exactly as the prefix rules say', async () => {
  await fc.assert(fc.asyncProperty(providers, providers, fc.uint8Array({ maxLength: 64 }), async (a, b, body) => {
    const plaintext = Buffer.concat([Buffer.from('{'), body]); // never starts with k8s:enc:
    const stored = await buildTransformers(toConfig(a)).forResource(secrets).toStorage(plaintext, ctx);
    const writer = a[0]!;
    const expected = expectedReader(writer, b);
    const reading = buildTransformers(toConfig(b)).forResource(secrets).fromStorage(stored, ctx);
    if (expected === undefined) {
      await assert.rejects(reading, (err: unknown) => err instanceof TransformError && err.storageKey === ctx.toString());
      return;
    }
    const r = await reading;
    assert.deepEqual(r.plaintext, plaintext);
    assert.equal(r.stale, expected.provider !== 0 || expected.key !== 0);
    assert.equal(r.origin.provider, writer.kind);
    if (writer.kind !== 'identity') assert.equal(r.origin.name, writer.keys[0]);
  }), { numRuns: 200 });
});
