// Suite 1, transformers: encrypt+decrypt operations per second of one value through each provider's
// prefix chain, as kube-apiserver's storage layer runs it (buildTransformers → forResource(secrets)
// → toStorage then fromStorage, AAD = the storage key), for 1 KiB and 64 KiB values (`--size`: one
// value size in bytes instead). The baseline is raw AES-256-GCM through node:crypto in the same
// process: fresh 12-byte nonce, 32-byte key, the same AAD, encrypt then decrypt (verify tag).
// The KMS service is in-process (test/helpers/fake-kms.ts: AES-GCM wrap under a random KEK): the
// cost of a KMS call is not what this suite measures (bench/plugin.ts measures the plugin). kms v1
// calls it on every write (a fresh DEK per write, as kube-apiserver does) and reads hit the DEK
// cache; kms v2 calls it once per DEK seed, not per write.
import { createCipheriv, createDecipheriv, randomBytes, randomFillSync } from 'node:crypto';
import { parseEncryptionConfig } from '../src/config/index.js';
import { buildTransformers } from '../src/transform/build.js';
import { KmsV1Transformer } from '../src/transform/kmsv1.js';
import { KmsV2Transformer } from '../src/transform/kmsv2/transformer.js';
import { DekSeedStateHolder } from '../src/transform/kmsv2/state.js';
import { KmsV2Probe } from '../src/kms/v2-probe.js';
import type { Transformer } from '../src/transform/types.js';
import { FakeKmsV1, FakeKmsV2 } from '../test/helpers/fake-kms.js';
import { formatBytes, measurePaired, type BenchContext, type Row, type SuiteResult } from './lib.js';

const PROVIDERS = ['identity', 'aescbc', 'aesgcm', 'secretbox', 'kms v1', 'kms v2'] as const;
type Provider = (typeof PROVIDERS)[number];

function providerYaml(p: Provider): string {
  const key = randomBytes(32).toString('base64');
  switch (p) {
    case 'identity': return '- identity: {}';
    case 'aescbc': return `- aescbc:\n          keys: [{ name: k1, secret: ${key} }]`;
    case 'aesgcm': return `- aesgcm:\n          keys: [{ name: k1, secret: ${key} }]`;
    case 'secretbox': return `- secretbox:\n          keys: [{ name: k1, secret: ${key} }]`;
    case 'kms v1': return '- kms: { apiVersion: v1, name: bench, endpoint: "unix:///unused.sock", cachesize: 1000 }';
    case 'kms v2': return '- kms: { apiVersion: v2, name: bench, endpoint: "unix:///unused.sock" }';
  }
}

async function chainFor(p: Provider): Promise<Transformer> {
  const yaml = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      ${providerYaml(p)}
`;
  const { config } = parseEncryptionConfig(yaml, 'bench.yaml');
  const probes: KmsV2Probe[] = [];
  const set = buildTransformers(config, {
    kms: (kms) => {
      if (kms.apiVersion === 'v1') return new KmsV1Transformer({ providerName: kms.name, service: new FakeKmsV1(), cacheSize: kms.cachesize });
      const service = new FakeKmsV2();
      const state = new DekSeedStateHolder();
      probes.push(new KmsV2Probe(kms.name, service, state, { positiveMs: 20_000, negativeMs: 3_000 }, Date.now));
      return new KmsV2Transformer({ providerName: kms.name, service, state });
    },
  });
  // kms v2 writes need the DEK seed a first Status makes (the server's status loop does this).
  for (const probe of probes) await probe.check();
  return set.forResource({ group: '', resource: 'secrets' });
}

/** Raw AES-256-GCM encrypt+decrypt of `value` with node:crypto: the baseline. */
function rawGcmOp(value: Buffer, aad: Buffer): () => void {
  const key = randomBytes(32);
  const nonce = Buffer.alloc(12);
  return () => {
    randomFillSync(nonce);
    const c = createCipheriv('aes-256-gcm', key, nonce);
    c.setAAD(aad);
    const ct = c.update(value);
    c.final(); // GCM's final output is empty
    const tag = c.getAuthTag();
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAAD(aad);
    d.setAuthTag(tag);
    const pt = d.update(ct);
    d.final(); // verifies the tag
    if (pt.length !== value.length) throw new Error('raw GCM round trip lost bytes');
  };
}

export async function run(ctx: BenchContext): Promise<SuiteResult> {
  const sizes = ctx.size !== undefined ? [ctx.size] : ctx.quick ? [1024] : [1024, 64 * 1024];
  const aad = Buffer.from('/registry/secrets/default/bench-secret');
  const chains = new Map<Provider, Transformer>();
  for (const p of PROVIDERS) chains.set(p, await chainFor(p));
  const rows: Row[] = [];
  for (const size of sizes) {
    const value = randomBytes(size);
    const label = formatBytes(size);
    const raw = rawGcmOp(value, aad);
    const baseName = `raw AES-256-GCM, ${label}`;
    const sizeRows: Row[] = [];
    let baseRateSum = 0; // raw GCM ops/s of each provider's slices
    let baseRates = 0;
    for (const p of PROVIDERS) {
      const t = chains.get(p)!;
      const op = async () => {
        const stored = await t.toStorage(value, aad);
        const back = await t.fromStorage(stored, aad);
        if (back.plaintext.length !== value.length) throw new Error(`${p}: round trip lost bytes`);
      };
      // Warm-up (JIT of both paths, the kms caches), then interleaved slices against raw GCM.
      await measurePaired(raw, op, { seconds: Math.min(0.2, ctx.seconds / 2), rounds: 1 });
      const r = await measurePaired(raw, op, { seconds: ctx.quick ? ctx.seconds : 2 * ctx.seconds, rounds: ctx.quick ? 1 : 8 });
      baseRateSum += r.baseline;
      baseRates += 1;
      const target = p === 'kms v2' && size === 1024 ? 0.7 : undefined;
      sizeRows.push({
        name: `${p}, ${label}`, metric: 'encrypt+decrypt', value: r.candidate, unit: 'ops/s', baseline: baseName, ratio: r.ratio,
        ...(target !== undefined ? { target: `≥ ${target.toFixed(2)}×`, met: r.ratio >= target } : {}),
      });
      ctx.log(`${label}: ${p} ${Math.round(r.candidate)} ops/s, raw GCM ${Math.round(r.baseline)} ops/s in the same slices`);
    }
    rows.push({ name: baseName, metric: 'encrypt+decrypt', value: baseRateSum / baseRates, unit: 'ops/s', note: 'mean over all the slices it was paired with' }, ...sizeRows);
  }
  return {
    suite: 'transformers',
    title: 'Transformers: one value encrypted then decrypted through the provider chain, in process, 1 caller',
    rows,
    notes: [
      `${ctx.quick ? ctx.seconds / 2 : ctx.seconds} s per row (and as much for raw GCM) after a warm-up, in alternating slices with raw AES-256-GCM of the same size; ratio = provider ops/s ÷ raw GCM ops/s in its own slices (load drift hits both alike)`,
      'KMS is an in-process fake (AES-GCM wrap): KMS call cost is not measured here; kms v1 calls it on every write (fresh DEK), reads hit its DEK cache; kms v2 calls it once per DEK seed',
      'kms v2 derives a key per write (HKDF-SHA256 = one HMAC, ~13% of its op in a CPU profile), keeps it for reads of that storage key (as kube-apiserver does), and decodes and validates the EncryptedObject protobuf on every read',
    ],
  };
}
