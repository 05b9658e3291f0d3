// Issue #8 §5, bad input on the read path of every transformer (fast-check): random bytes, random
// bytes behind each provider's prefix, and mutations (bit flips, truncation, insertion, splicing of
// two values) of genuine aesgcm, aescbc, secretbox, kms v1 and kms v2 values, read through one
// configuration that lists all of them plus identity (the API server's read path). Every read
// either fails with a typed AtrestError (never a crash, a RangeError, a hang) or, for the
// authenticated providers, returns exactly the original plaintext. CI-sized run counts;
// ATREST_FUZZ_RUNS raises them (`npm run fuzz:long`).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import type { EncryptionConfiguration, KMSConfiguration, ProviderConfiguration } from '../../src/config/types.js';
import { AtrestError } from '../../src/errors.js';
import { KmsV2Probe } from '../../src/kms/v2-probe.js';
import { buildTransformers } from '../../src/transform/build.js';
import { KmsV1Transformer } from '../../src/transform/kmsv1.js';
import { DekSeedStateHolder } from '../../src/transform/kmsv2/state.js';
import { KmsV2Transformer } from '../../src/transform/kmsv2/transformer.js';
import type { Transformer } from '../../src/transform/types.js';
import { FakeKmsV1, FakeKmsV2 } from '../helpers/fake-kms.js';

const RUNS = Number(process.env['ATREST_FUZZ_RUNS'] ?? 500);
const secrets = { group: '', resource: 'secrets' };
const KINDS = ['aesgcm', 'aescbc', 'secretbox', 'kmsv1', 'kmsv2'] as const;
type Kind = (typeof KINDS)[number];
// Not kmsv1: like kube (envelope.go unionTransformers{gcm, cbc}) its reads fall back to AES-CBC for
// values written before GCM, so a value tampered at its end passes when the padding happens to
// check (about 1 in 256 such tries), decrypting to garbage; aescbc has no MAC at all. Counted.
const AUTHENTICATED = new Set<Kind>(['aesgcm', 'secretbox', 'kmsv2']);
const KEY = Buffer.from('/registry/secrets/default/fuzz');

const keys = { aesgcm: randomBytes(32), aescbc: randomBytes(32), secretbox: randomBytes(32) };
function provider(k: Kind): ProviderConfiguration {
  switch (k) {
    case 'aesgcm': case 'aescbc': case 'secretbox':
      return { [k]: { keys: [{ name: 'k1', secret: keys[k].toString('base64') }] } } as ProviderConfiguration;
    case 'kmsv1': return { kms: { apiVersion: 'v1', name: 'kv1', endpoint: 'unix:///nonexistent', cachesize: 10, timeout: '3s', timeoutMs: 3000 } } as unknown as ProviderConfiguration;
    case 'kmsv2': return { kms: { apiVersion: 'v2', name: 'kv2', endpoint: 'unix:///nonexistent', timeout: '3s', timeoutMs: 3000 } } as unknown as ProviderConfiguration;
  }
}

async function setup(): Promise<{ readers: Transformer; writers: Record<Kind, Transformer> }> {
  const v1 = new FakeKmsV1();
  const v2 = new FakeKmsV2();
  const state = new DekSeedStateHolder({});
  await new KmsV2Probe('kv2', v2, state, { positiveMs: 0, negativeMs: 0 }, Date.now).check();
  const kv1 = new KmsV1Transformer({ providerName: 'kv1', service: v1 });
  const kv2 = new KmsV2Transformer({ providerName: 'kv2', service: v2, state });
  const kms = (c: KMSConfiguration): Transformer => (c.apiVersion === 'v2' ? kv2 : kv1);
  const build = (first: Kind): Transformer => {
    const cfg: EncryptionConfiguration = {
      apiVersion: 'apiserver.config.k8s.io/v1', kind: 'EncryptionConfiguration',
      resources: [{ resources: ['secrets'], providers: [first, ...KINDS.filter((k) => k !== first)].map(provider).concat([{ identity: {} } as ProviderConfiguration]) }],
    };
    return buildTransformers(cfg, { kms }).forResource(secrets);
  };
  const writers = Object.fromEntries(KINDS.map((k) => [k, build(k)])) as Record<Kind, Transformer>;
  return { readers: build('aesgcm'), writers };
}

/** 'ok' with the plaintext, or 'error'; anything thrown that is not an AtrestError fails. */
async function read(t: Transformer, stored: Uint8Array): Promise<{ ok: true; data: Buffer } | { ok: false }> {
  try {
    const r = await t.fromStorage(stored, KEY);
    return { ok: true, data: Buffer.from(r.plaintext) };
  } catch (err) {
    assert.ok(err instanceof AtrestError, `untyped failure: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
    assert.ok(!/[\r\n]/.test(err.message) || err.message.length < 2000);
    return { ok: false };
  }
}

const counts: Record<string, { runs: number; rejected: number; accepted: number; garbage?: number }> = {};
const bump = (name: string, ok: boolean): void => {
  const c = (counts[name] ??= { runs: 0, rejected: 0, accepted: 0 });
  c.runs++;
  if (ok) c.accepted++; else c.rejected++;
};

test('every transformer\'s read path: random and mutated stored bytes give a typed error or the genuine plaintext', { timeout: 600_000 }, async () => {
  const { readers, writers } = await setup();
  const plaintext = fc.uint8Array({ minLength: 0, maxLength: 300 });

  // Random bytes, alone and behind every prefix the configuration knows.
  const prefixes = ['', 'k8s:enc:', 'k8s:enc:aesgcm:v1:k1:', 'k8s:enc:aescbc:v1:k1:', 'k8s:enc:secretbox:v1:k1:', 'k8s:enc:kms:v1:kv1:', 'k8s:enc:kms:v2:kv2:', 'k8s:enc:aesgcm:v1:', 'k8s:enc:kms:v2:'];
  await fc.assert(fc.asyncProperty(fc.constantFrom(...prefixes), fc.uint8Array({ maxLength: 400 }), async (prefix, tail) => {
    const stored = Buffer.concat([Buffer.from(prefix), tail]);
    const r = await read(readers, stored);
    bump('random', r.ok);
    // Only identity (no k8s:enc: prefix) may accept random bytes: it returns them unchanged.
    if (r.ok) assert.ok(!stored.subarray(0, 8).equals(Buffer.from('k8s:enc:')) && r.data.equals(stored));
  }), { numRuns: RUNS });

  // Mutations of genuine values.
  const mutation = fc.oneof(
    fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    fc.record({ op: fc.constant('splice' as const), at: fc.nat(), other: fc.constantFrom(...KINDS) }),
  );
  for (const kind of KINDS) {
    const others: Record<string, Buffer> = {};
    for (const k of KINDS) others[k] = await writers[k].toStorage(Buffer.from(`other value of ${k}`), KEY);
    await fc.assert(fc.asyncProperty(plaintext, mutation, async (plain, m) => {
      const genuine = await writers[kind].toStorage(plain, KEY);
      const at = m.at % Math.max(1, genuine.length);
      let stored: Buffer;
      switch (m.op) {
        case 'flip': stored = Buffer.from(genuine); stored[at]! ^= 1 << m.bit; break;
        case 'truncate': stored = genuine.subarray(0, at); break;
        case 'insert': stored = Buffer.concat([genuine.subarray(0, at), m.bytes, genuine.subarray(at)]); break;
        case 'splice': { const o = others[m.other]!; stored = Buffer.concat([genuine.subarray(0, at), o.subarray(Math.min(at, o.length))]); break; }
      }
      const r = await read(readers, stored);
      bump(kind, r.ok);
      const genuineRead = r.ok && [Buffer.from(plain), ...KINDS.map((k) => Buffer.from(`other value of ${k}`))].some((c) => c.equals(r.data));
      if (r.ok && !genuineRead && stored.subarray(0, 8).equals(Buffer.from('k8s:enc:'))) counts[kind]!.garbage = (counts[kind]!.garbage ?? 0) + 1;
      if (r.ok && AUTHENTICATED.has(kind) && stored.subarray(0, 8).equals(Buffer.from('k8s:enc:'))) {
        // An authenticated value read back must be a genuine one (the splice may land on the other value intact).
        const candidates = [Buffer.from(plain), ...KINDS.map((k) => Buffer.from(`other value of ${k}`))];
        assert.ok(candidates.some((c) => c.equals(r.data)), `${kind} ${m.op} at ${at}: a tampered value decrypted to something else (${r.data.length} bytes)`);
      }
    }), { numRuns: RUNS });
  }
  console.log(`RELIABILITY ${JSON.stringify({ section: 'fuzz-transformers', runsPerProperty: RUNS, counts })}`);
  for (const k of AUTHENTICATED) assert.equal(counts[k]?.garbage ?? 0, 0, k);
});
