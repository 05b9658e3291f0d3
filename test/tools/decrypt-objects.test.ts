// Decoding decrypted values into objects (src/tools/k8s-object.ts over src/k8s-objects/protobuf.ts)
// and the output layouts of src/tools/decrypt.ts, without processes: real kubectl protobuf bodies,
// JSON objects, values that are neither, and a property that random bytes behind the `k8s\0` magic
// give an object or a StoredObjectError, never another exception.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { parse as parseYaml } from 'yaml';
import { formatMany, formatOne, type DecryptedValue } from '../../src/tools/decrypt.js';
import { decodeStoredObject, StoredObjectError } from '../../src/tools/k8s-object.js';

interface Capture { ct?: string; body64?: string }
const bodies = readFileSync(new URL('../fixtures/kubectl-captures/scenario_kubectl.requests.jsonl', import.meta.url), 'utf8')
  .split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Capture)
  .filter((c) => c.ct === 'application/vnd.kubernetes.protobuf' && c.body64).map((c) => Buffer.from(c.body64!, 'base64'));

const value = (key: string, plaintext: Buffer): DecryptedValue => ({ key, plaintext, origin: { provider: 'identity' }, stale: false });

test('kubectl protobuf bodies and JSON objects decode; other values are named errors', () => {
  assert.ok(bodies.length >= 3);
  for (const b of bodies) {
    const s = decodeStoredObject(b);
    assert.equal(s.encoding, 'protobuf');
    assert.equal(s.partial, false);
    assert.ok(s.object.metadata.name);
  }
  assert.deepEqual(decodeStoredObject(Buffer.from('{"kind":"Widget","metadata":{"name":"w"}}')), { object: { kind: 'Widget', metadata: { name: 'w' } }, encoding: 'json', partial: false });
  assert.throws(() => decodeStoredObject(Buffer.from('plain text')), (e: unknown) => e instanceof StoredObjectError && /neither a JSON object nor a Kubernetes protobuf object/.test(e.message) && !e.message.includes('plain text'));
  assert.throws(() => decodeStoredObject(Buffer.from('[1,2]')), StoredObjectError);
  assert.throws(() => decodeStoredObject(Buffer.from('k8s\0\x0a\x05')), (e: unknown) => e instanceof StoredObjectError && /unable to decode/.test(e.message));
});

test('output layouts: raw bytes, one object, a v1 List in JSON and YAML', () => {
  const a = value('/registry/namespaces/x', bodies.find((b) => b.includes(Buffer.from('Namespace')))!);
  const b = value('/registry/configmaps/d/c', Buffer.from('{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"d"}}'));
  assert.ok(formatOne(a, 'raw').bytes.equals(a.plaintext));
  assert.deepEqual(JSON.parse(formatOne(a, 'json').bytes.toString()), { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
  assert.equal(formatMany([a, b], 'raw').bytes.toString('latin1'), `${a.key}\n${a.plaintext.toString('latin1')}\n${b.key}\n${b.plaintext.toString('latin1')}\n`);
  const list = { apiVersion: 'v1', items: [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } }, JSON.parse(b.plaintext.toString())], kind: 'List', metadata: { resourceVersion: '' } };
  assert.deepEqual(JSON.parse(formatMany([a, b], 'json').bytes.toString()), list);
  assert.deepEqual(parseYaml(formatMany([a, b], 'yaml').bytes.toString()), list);
  const bad = formatMany([a, value('/registry/secrets/d/s', Buffer.from('opaque'))], 'json');
  assert.deepEqual(bad.undecodable.map((u) => u.key), ['/registry/secrets/d/s']);
  assert.equal((JSON.parse(bad.bytes.toString()) as { items: unknown[] }).items.length, 1);
});

test('property: any bytes after the k8s magic decode or fail with StoredObjectError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (tail) => {
      try {
        decodeStoredObject(Buffer.concat([Buffer.from('k8s\0', 'latin1'), tail]));
      } catch (err) {
        if (!(err instanceof StoredObjectError)) throw err;
      }
    }),
    { numRuns: 2000 },
  );
  // mutations of real bodies reach deeper into the messages
  fc.assert(
    fc.property(fc.constantFrom(...bodies), fc.array(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 4 }), (body, edits) => {
      const copy = Buffer.from(body);
      for (const e of edits) copy[4 + (e.at % (copy.length - 4))] = e.byte;
      try {
        decodeStoredObject(copy);
      } catch (err) {
        if (!(err instanceof StoredObjectError)) throw err;
      }
    }),
    { numRuns: 2000 },
  );
});

test('a data key named __proto__ (valid in a Secret) is kept as data', async () => {
  const { BinaryWriter, WireType } = await import('@bufbuild/protobuf/wire');
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.LengthDelimited).string('v1').tag(2, WireType.LengthDelimited).string('Secret').finish());
  const raw = new BinaryWriter()
    .tag(1, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.LengthDelimited).string('s').finish())
    .tag(2, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.LengthDelimited).string('__proto__').tag(2, WireType.LengthDelimited).bytes(Buffer.from('v')).finish())
    .finish();
  w.tag(2, WireType.LengthDelimited).bytes(raw);
  const { object } = decodeStoredObject(Buffer.concat([Buffer.from('k8s\0', 'latin1'), w.finish()]));
  assert.equal(JSON.stringify(object['data']), '{"__proto__":"dg=="}');
});
