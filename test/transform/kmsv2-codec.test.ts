import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { EncryptedObjectSchema } from '../../src/gen/kmsv2/encrypted_object_pb.js';
import { decodeEncryptedObject, encodeEncryptedObject, type EncryptedObject } from '../../src/transform/kmsv2/encrypted-object.js';
import { checkFullyQualifiedDomainName, validateEncryptedObject } from '../../src/transform/kmsv2/validation.js';
import { dekSourceCacheKey } from '../../src/transform/kmsv2/cache-key.js';
import { ExpiringCache } from '../../src/transform/kmsv2/expiring-cache.js';

const bytes = (max = 64) => fc.uint8Array({ maxLength: max }).map((u) => Buffer.from(u));
const objectArb: fc.Arbitrary<EncryptedObject> = fc.record({
  encryptedData: bytes(200),
  keyID: fc.string({ unit: 'grapheme', maxLength: 40 }),
  encryptedDEKSource: bytes(),
  annotations: fc.dictionary(fc.string({ maxLength: 20 }).filter((k) => k !== '__proto__'), bytes(16), { maxKeys: 4 }),
  encryptedDEKSourceType: fc.oneof(fc.constantFrom(0, 1), fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })),
});

function normalize(o: EncryptedObject): unknown {
  return {
    encryptedData: Buffer.from(o.encryptedData).toString('hex'),
    keyID: o.keyID,
    encryptedDEKSource: Buffer.from(o.encryptedDEKSource).toString('hex'),
    annotations: Object.fromEntries(Object.entries(o.annotations).sort().map(([k, v]) => [k, Buffer.from(v).toString('hex')])),
    encryptedDEKSourceType: o.encryptedDEKSourceType,
  };
}

test('hand-written EncryptedObject codec is wire-compatible with the generated schema, both ways', () => {
  fc.assert(fc.property(objectArb, (o) => {
    const ours = encodeEncryptedObject(o);
    const viaGenerated = fromBinary(EncryptedObjectSchema, ours);
    assert.deepEqual(normalize(viaGenerated), normalize(o));
    const theirs = toBinary(EncryptedObjectSchema, create(EncryptedObjectSchema, o));
    assert.deepEqual(normalize(decodeEncryptedObject(theirs)), normalize(o));
    if (Object.keys(o.annotations).length <= 1) assert.ok(Buffer.from(theirs).equals(ours), 'same bytes');
  }), { numRuns: 300 });
});

test('decoder accepts any field and map-entry order, repeated and unknown fields, omitted zero values', () => {
  const field = (tag: number, b: Buffer) => Buffer.concat([Buffer.of(tag, b.length), b]);
  const entry = (k: string, v: string) => field(0x22, Buffer.concat([field(0x12, Buffer.from(v)), field(0x0a, Buffer.from(k))]));
  const msg = Buffer.concat([
    Buffer.of(0x28, 0x01), entry('b.example.com', 'B'), field(0x1a, Buffer.from('edek')), field(0x12, Buffer.from('first')),
    Buffer.of(0x30, 0x96, 0x01), // unknown varint field 6
    field(0x0a, Buffer.from('data')), entry('a.example.com', 'A'), field(0x12, Buffer.from('kid')), // keyID repeated: last wins
    Buffer.of(0x3d, 1, 2, 3, 4), // unknown fixed32 field 7
  ]);
  const o = decodeEncryptedObject(msg);
  assert.deepEqual(normalize(o), normalize({
    encryptedData: Buffer.from('data'), keyID: 'kid', encryptedDEKSource: Buffer.from('edek'),
    annotations: { 'a.example.com': Buffer.from('A'), 'b.example.com': Buffer.from('B') }, encryptedDEKSourceType: 1,
  }));
  assert.deepEqual(normalize(decodeEncryptedObject(Buffer.alloc(0))), normalize({ encryptedData: Buffer.alloc(0), keyID: '', encryptedDEKSource: Buffer.alloc(0), annotations: {}, encryptedDEKSourceType: 0 }));
  const wire = 'proto: cannot parse invalid wire-format data';
  for (const bad of [Buffer.of(0x0a, 5, 1), Buffer.of(0x0a), Buffer.of(0x00, 1), Buffer.of(0x0f), Buffer.of(0x28, 0x80), Buffer.of(0x22, 2, 0x0a, 9)]) {
    assert.throws(() => decodeEncryptedObject(bad), { message: wire });
  }
  assert.throws(() => decodeEncryptedObject(Buffer.of(0x12, 1, 0xff)), { message: 'proto: field v2.EncryptedObject.keyID contains invalid UTF-8' });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (junk) => {
    try { decodeEncryptedObject(junk); } catch (err) { assert.equal((err as { code?: string }).code, 'DECRYPT_FAILED'); }
  }), { numRuns: 500 });
});

test('EncryptedObject validation texts (format.md §1.6)', () => {
  const ok: EncryptedObject = { encryptedData: Buffer.of(1), keyID: 'k', encryptedDEKSource: Buffer.of(1), annotations: {}, encryptedDEKSourceType: 1 };
  const cases: Array<[Partial<EncryptedObject>, string]> = [
    [{ encryptedDEKSourceType: 2 }, 'unknown encryptedDEKSourceType: 2'],
    [{ encryptedDEKSourceType: -1 }, 'unknown encryptedDEKSourceType: -1'],
    [{ encryptedData: Buffer.alloc(0) }, 'encrypted data is empty'],
    [{ encryptedDEKSource: Buffer.alloc(0) }, 'failed to validate encrypted DEK source: encrypted DEK source is empty'],
    [{ encryptedDEKSource: Buffer.alloc(1025) }, 'failed to validate encrypted DEK source: encrypted DEK source is 1025 bytes, which exceeds the max size of 1024'],
    [{ keyID: '' }, 'failed to validate key id: keyID is empty'],
    [{ keyID: 'é'.repeat(513) }, 'failed to validate key id: keyID is 1026 bytes, which exceeds the max size of 1024'],
    [{ annotations: { com: Buffer.of() } }, 'failed to validate annotations: annotations: Invalid value: "com": should be a domain with at least two segments separated by dots'],
    [{ annotations: { 'a.example.com': Buffer.alloc(16 * 1024), 'b.example.com': Buffer.alloc(16 * 1024) } }, 'failed to validate annotations: total size of annotations is 32794, which exceeds the max size of 32768'],
    [{ annotations: { 'com': Buffer.of(), 'Dev.k8s.io': Buffer.of() } }, 'failed to validate annotations: [annotations: Invalid value: "Dev.k8s.io": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \'-\' or \'.\', and must start and end with an alphanumeric character (e.g. \'example.com\', regex used for validation is \'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\'), annotations: Invalid value: "com": should be a domain with at least two segments separated by dots]'],
  ];
  validateEncryptedObject(ok);
  for (const [change, message] of cases) {
    assert.throws(() => validateEncryptedObject({ ...ok, ...change }), { message }, message);
  }
  // k8s.io/apiserver TestValidateAnnotations cases.
  for (const valid of ['10.0.0.1', 'dev.k8s.io.', 'a.b', 'x'.repeat(63) + '.io']) assert.equal(checkFullyQualifiedDomainName('annotations', valid), undefined, valid);
  for (const invalid of ['com', 'Dev.k8s.io', '*.example.com', 'underscores_are_bad.k8s.io', '', 'x'.repeat(64) + '.io', 'a..b']) {
    assert.notEqual(checkFullyQualifiedDomainName('annotations', invalid), undefined, invalid);
  }
  assert.equal(checkFullyQualifiedDomainName('annotations', 'x'.repeat(64) + '.io'), 'annotations: Invalid value: "' + 'x'.repeat(64) + '": must be no more than 63 characters');
  assert.equal(checkFullyQualifiedDomainName('annotations', ''), 'annotations: Required value');
});

test('decrypt-cache key is SHA-256 of the documented byte layout, annotations in byte order', () => {
  const edek = Buffer.from('edek');
  const expected = createHash('sha256').update(Buffer.concat([
    Buffer.of(0, 0, 0, 1), Buffer.of(0, 4), edek, Buffer.of(0, 3), Buffer.from('kid'),
    Buffer.of(0, 0, 0, 2), Buffer.of(0, 3), Buffer.from('a.b'), Buffer.of(0, 1), Buffer.from('1'), Buffer.of(0, 3), Buffer.from('c.d'), Buffer.of(0, 0),
  ])).digest();
  const key = dekSourceCacheKey(1, edek, 'kid', { 'c.d': Buffer.alloc(0), 'a.b': Buffer.from('1') });
  assert.ok(Buffer.from(key, 'latin1').equals(expected));
  const noAnn = createHash('sha256').update(Buffer.concat([Buffer.of(0, 0, 0, 0), Buffer.of(0, 4), edek, Buffer.of(0, 3), Buffer.from('kid')])).digest();
  assert.ok(Buffer.from(dekSourceCacheKey(0, edek, 'kid', {}), 'latin1').equals(noAnn));
});

test('expiring cache serves expired entries until the next set collects them', () => {
  let now = 0;
  const c = new ExpiringCache<string>(100, () => now);
  c.set('a', 'A');
  now = 50;
  c.set('b', 'B');
  now = 150;
  assert.equal(c.get('a'), 'A', 'expired but not yet collected');
  c.set('a', 'A2'); // collects nothing live: a is re-inserted, b (expires 150) is collected
  assert.equal(c.get('b'), undefined);
  assert.equal(c.get('a'), 'A2');
  assert.equal(c.size, 1);
});
