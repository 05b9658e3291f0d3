// Property tests (fast-check): the loader throws nothing but ConfigError on any input, its
// messages are one line, it never shows a key secret whatever else is wrong with the file, and
// valid configurations survive a YAML or JSON round trip with kube's defaults applied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { ConfigError, parseEncryptionConfig } from '../../src/config/load.js';
import { validateEncryptionConfiguration } from '../../src/config/validate.js';
import type { EncryptionConfiguration, ProviderConfiguration } from '../../src/config/types.js';

// ATREST_FUZZ_RUNS raises the run count for a long fuzz session outside CI.
const RUNS = Number(process.env['ATREST_FUZZ_RUNS'] ?? 300);

function outcome(raw: Buffer | string, reload = false): { ok: true; config: EncryptionConfiguration } | { ok: false; err: ConfigError } {
  try {
    return { ok: true, config: parseEncryptionConfig(raw, 'prop.yaml', { reload }).config };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    assert.ok(!/[\r\n]/.test(err.message), `multi-line message: ${JSON.stringify(err.message)}`);
    return { ok: false, err };
  }
}

// ---------------------------------------------------------------------------------------------
// Arbitrary configuration objects (plain JS, as they would be written in a file)

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Secrets are long and contain an alphanumeric, so "appears in a message" is meaningful. */
const secretArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(16, 24, 32).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })).map((b) => Buffer.from(b).toString('base64')),
  fc.uint8Array({ minLength: 12, maxLength: 48 }).map((b) => Buffer.from(b).toString('base64')),
  fc.string({ minLength: 16, maxLength: 40 }).filter((s) => /[A-Za-z0-9]/.test(s) && s.trim() === s),
);

const keyArb = fc.record({ name: fc.constantFrom('key1', 'key2', 'k:3', ''), secret: secretArb });
const keysArb = fc.array(keyArb, { minLength: 0, maxLength: 3 });
const kmsArb = fc.record(
  {
    apiVersion: fc.constantFrom('v1', 'v2', 'v3', ''),
    name: fc.constantFrom('kms', 'other', 'a:b', ''),
    endpoint: fc.constantFrom('unix:///tmp/kms.sock', 'unix:///@abstract', 'https://x', 'unix://h:p/x', ''),
    timeout: fc.constantFrom('3s', '500ms', '0s', '-1m', 'abc', '1m30s'),
    cachesize: fc.integer({ min: -2, max: 2000 }),
  },
  { requiredKeys: ['name', 'endpoint'] },
);
const providerArb: fc.Arbitrary<Record<string, Json>> = fc.oneof(
  keysArb.map((keys) => ({ aesgcm: { keys } })),
  keysArb.map((keys) => ({ aescbc: { keys } })),
  keysArb.map((keys) => ({ secretbox: { keys } })),
  fc.constant({ identity: {} }),
  kmsArb.map((kms) => ({ kms: kms as Json })),
);
const resourceNameArb = fc.constantFrom('secrets', 'configmaps', 'pods', '*.apps', 'deployments.apps', 'pandas.awesome.bears.example', '*.', '*.*', 'Secrets', 'events.events.k8s.io', 'foo.*', '*');
const typeMetaArb = fc.oneof(
  { weight: 9, arbitrary: fc.constantFrom<[string, string]>(['apiserver.config.k8s.io/v1', 'EncryptionConfiguration'], ['v1', 'EncryptionConfig']) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('apiserver.config.k8s.io/v1', 'v1', ''), fc.constantFrom('EncryptionConfiguration', 'EncryptionConfig', '')) },
) as fc.Arbitrary<[string, string]>;
const configArb = fc.record({
  typeMeta: typeMetaArb,
  resources: fc.array(
    fc.record({ resources: fc.array(resourceNameArb, { minLength: 0, maxLength: 3 }), providers: fc.array(providerArb, { minLength: 0, maxLength: 4 }) }),
    { minLength: 0, maxLength: 3 },
  ),
}).map(({ typeMeta: [apiVersion, kind], resources }) => ({ apiVersion, kind, resources }));

function secretsOf(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) v.forEach((x) => secretsOf(x, out));
  else if (typeof v === 'object' && v !== null) {
    for (const [k, x] of Object.entries(v)) {
      if (k === 'secret' && typeof x === 'string') out.push(x);
      else secretsOf(x, out);
    }
  }
  return out;
}

// Structural mutations of the object: they never move a secret into a key or a non-secret field.
const valueArb: fc.Arbitrary<Json> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 8 }),
  fc.constant<Json>([]),
  fc.constant<Json>({}),
) as fc.Arbitrary<Json>;

type Mutation = (obj: Record<string, Json>, pick: number, value: Json, secret: string) => void;

function containers(v: Json, out: Array<Record<string, Json> | Json[]> = []): Array<Record<string, Json> | Json[]> {
  if (Array.isArray(v)) {
    out.push(v);
    v.forEach((x) => containers(x, out));
  } else if (typeof v === 'object' && v !== null) {
    out.push(v);
    Object.values(v).forEach((x) => containers(x, out));
  }
  return out;
}

const mutations: Mutation[] = [
  // drop a field or list element
  (obj, pick) => {
    const all = containers(obj);
    const c = all[pick % all.length];
    if (Array.isArray(c)) c.splice(pick % Math.max(c.length, 1), 1);
    else if (c !== undefined) {
      const keys = Object.keys(c);
      if (keys.length > 0) delete c[keys[pick % keys.length] as string];
    }
  },
  // replace a non-secret field or element with a value of another type
  (obj, pick, value) => {
    const all = containers(obj);
    const c = all[pick % all.length];
    if (Array.isArray(c)) {
      if (c.length > 0 && !(typeof c[pick % c.length] === 'string' && secretsOf(obj).includes(c[pick % c.length] as string))) c[pick % c.length] = value;
    } else if (c !== undefined) {
      const keys = Object.keys(c).filter((k) => k !== 'secret');
      if (keys.length > 0) c[keys[pick % keys.length] as string] = value;
    }
  },
  // add an unknown field whose value may be a secret
  (obj, pick, value, secret) => {
    const all = containers(obj).filter((c) => !Array.isArray(c)) as Array<Record<string, Json>>;
    const c = all[pick % all.length];
    if (c !== undefined) c[['pandas', 'Secret', 'keyz', 'metadata'][pick % 4] as string] = pick % 2 === 0 ? secret : value;
  },
  // wrap a secret in a list or an object (a type error that must not show it)
  (obj, pick) => {
    const all = containers(obj).filter((c) => !Array.isArray(c) && typeof (c as Record<string, Json>).secret === 'string') as Array<Record<string, Json>>;
    const c = all[pick % Math.max(all.length, 1)];
    if (c !== undefined) c.secret = pick % 2 === 0 ? [c.secret as string] : { value: c.secret as string };
  },
];

// Text mutations of the serialized YAML that leave lines holding a secret intact (duplicating a
// whole line is allowed anywhere: a duplicate `secret:` key is reported by name only).
function mutateText(text: string, secrets: string[], ops: Array<[number, number, string]>): string {
  const lines = text.split('\n');
  for (const [kind, at, chars] of ops) {
    if (lines.length === 0) break;
    const i = at % lines.length;
    const line = lines[i] as string;
    const holdsSecret = secrets.some((s) => s.length > 0 && line.includes(s.slice(0, 8)));
    switch (kind % 4) {
      case 0:
        lines.splice(i, 0, line); // duplicate a line
        break;
      case 1:
        if (!holdsSecret) lines.splice(i, 1);
        break;
      case 2:
        if (!holdsSecret) lines[i] = line.slice(0, at % (line.length + 1)) + chars + line.slice(at % (line.length + 1));
        break;
      case 3:
        if (!holdsSecret) lines[i] = (at % 2 === 0 ? ' ' : '') + line.slice(at % 2 === 0 ? 0 : 1);
        break;
    }
  }
  return lines.join('\n');
}

function serialize(obj: unknown, asJson: boolean): string {
  return asJson ? JSON.stringify(obj, null, 1) : stringify(obj, { version: '1.1' });
}

test('arbitrary bytes and text: only ConfigError, one-line messages', () => {
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)), fc.string({ maxLength: 300 }), fc.json()), (raw) => {
      outcome(raw);
    }),
    { numRuns: RUNS },
  );
});

test('any mutation of a valid-looking file: only ConfigError, and no key secret in the message', () => {
  fc.assert(
    fc.property(
      configArb,
      fc.array(fc.tuple(fc.nat(mutations.length - 1), fc.nat(1000), valueArb), { maxLength: 3 }),
      fc.array(fc.tuple(fc.nat(), fc.nat(1000), fc.constantFrom(':', '-', ' ', '{', '"', '#', '\t', '[', 'x', '&a', '*a')), { maxLength: 3 }),
      fc.boolean(),
      fc.boolean(),
      (config, structural, textual, asJson, reload) => {
        const obj = structuredClone(config) as unknown as Record<string, Json>;
        const secrets = secretsOf(obj);
        // Clone the generated value: the mutations insert it into `obj` and may edit it later, and
        // fast-check reuses generated values while shrinking (an edited shared value can turn cyclic).
        for (const [m, pick, value] of structural) mutations[m]?.(obj, pick, structuredClone(value), secrets[pick % Math.max(secrets.length, 1)] ?? 'x');
        let text = serialize(obj, asJson);
        if (!asJson && textual.length > 0 && textual[0]![0] % 2 === 0) text = mutateText(text, secrets, textual);
        const result = outcome(text, reload);
        if (!result.ok) {
          for (const s of secrets) assert.ok(!result.err.message.includes(s), `secret shown in: ${result.err.message}`);
        }
      },
    ),
    { numRuns: RUNS },
  );
});

test('arbitrary character noise anywhere in a file (secret lines included): only ConfigError', () => {
  fc.assert(
    fc.property(configArb, fc.array(fc.tuple(fc.nat(), fc.string({ minLength: 1, maxLength: 3 })), { minLength: 1, maxLength: 4 }), (config, edits) => {
      let text = stringify(config, { version: '1.1' });
      for (const [at, s] of edits) {
        const i = at % (text.length + 1);
        text = text.slice(0, i) + s + text.slice(i + (at % 3 === 0 ? 1 : 0));
      }
      outcome(text);
    }),
    { numRuns: RUNS },
  );
});

// Valid configurations: distinct plain resources, good keys, kms names unique.
const goodKey = fc.constantFrom(16, 24, 32).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })).map((b) => Buffer.from(b).toString('base64'));
const goodProvider = (i: number): fc.Arbitrary<Record<string, unknown>> =>
  fc.oneof(
    fc.array(goodKey, { minLength: 1, maxLength: 2 }).map((ks) => ({ aesgcm: { keys: ks.map((secret, j) => ({ name: `k${j}`, secret })) } })),
    fc.array(goodKey, { minLength: 1, maxLength: 2 }).map((ks) => ({ aescbc: { keys: ks.map((secret, j) => ({ name: `k${j}`, secret })) } })),
    fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => ({ secretbox: { keys: [{ name: 'box', secret: Buffer.from(b).toString('base64') }] } })),
    fc.constant({ identity: {} }),
    fc.record({ v2: fc.boolean(), timeout: fc.option(fc.constantFrom('1s', '250ms', '2m')), cachesize: fc.option(fc.integer({ min: 1, max: 5000 })) }).map(({ v2, timeout, cachesize }) => {
      const kms: Record<string, unknown> = { name: `kms-${i}`, endpoint: `unix:///tmp/kms-${i}.sock` };
      if (v2) kms.apiVersion = 'v2';
      if (timeout !== null) kms.timeout = timeout;
      if (!v2 && cachesize !== null) kms.cachesize = cachesize;
      return { kms };
    }),
  );
const validConfigArb = fc
  .uniqueArray(fc.constantFrom('secrets', 'configmaps', 'pods', 'deployments.apps', 'pandas.awesome.bears.example', 'leases.coordination.k8s.io'), { minLength: 1, maxLength: 6 })
  .chain((names) =>
    fc.tuple(
      fc.constant(names),
      fc.array(fc.nat(2), { minLength: names.length, maxLength: names.length }),
      fc.tuple(...[0, 1, 2].map((e) => fc.tuple(...[0, 1, 2].map((p) => goodProvider(e * 3 + p))))),
      fc.boolean(),
    ),
  )
  .map(([names, entryOf, providers, legacy]) => ({
    apiVersion: legacy ? 'v1' : 'apiserver.config.k8s.io/v1',
    kind: legacy ? 'EncryptionConfig' : 'EncryptionConfiguration',
    resources: [0, 1, 2]
      .map((e) => ({ resources: names.filter((_, i) => entryOf[i] === e), providers: providers[e] as Array<Record<string, unknown>> }))
      .filter((e) => e.resources.length > 0),
  }));

function withDefaults(p: Record<string, unknown>): ProviderConfiguration {
  if (!('kms' in p)) return p as ProviderConfiguration;
  const k = p.kms as Record<string, unknown>;
  const apiVersion = (k.apiVersion as string | undefined) ?? 'v1';
  const ms: Record<string, number> = { '1s': 1000, '250ms': 250, '2m': 120000 };
  const kms: Record<string, unknown> = {
    apiVersion,
    name: k.name,
    endpoint: k.endpoint,
    timeoutMs: k.timeout === undefined ? 3000 : ms[k.timeout as string],
  };
  if (apiVersion === 'v1') kms.cachesize = (k.cachesize as number | undefined) ?? 1000;
  return { kms } as unknown as ProviderConfiguration;
}

test('valid configurations round-trip through YAML and JSON with kube defaults', () => {
  fc.assert(
    fc.property(validConfigArb, fc.boolean(), (config, asJson) => {
      const result = outcome(serialize(config, asJson));
      assert.ok(result.ok, result.ok ? '' : result.err.message);
      assert.deepEqual(result.config, {
        ...config,
        resources: config.resources.map((e) => ({ resources: e.resources, providers: e.providers.map(withDefaults) })),
      });
    }),
    { numRuns: RUNS },
  );
});

test('validateEncryptionConfiguration never throws on arbitrary in-memory objects', () => {
  fc.assert(
    fc.property(fc.oneof(fc.anything(), configArb.map((c) => c as unknown)), (value) => {
      assert.ok(Array.isArray(validateEncryptionConfiguration(value as EncryptionConfiguration)));
    }),
    { numRuns: RUNS },
  );
});
