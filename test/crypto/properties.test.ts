// Properties of the primitives over random inputs (fast-check): round trip; any single changed byte
// fails authentication (aesgcm, secretbox, extended nonce); any truncation is a typed error, never a
// crash or a hang; authenticated data binds the value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AesCbc, AesGcm, CryptoError, ExtendedNonceGcm, Secretbox } from '../../src/crypto/index.js';

const RUNS = 150;
const key = (sizes: number[]) => fc.constantFrom(...sizes).chain((n) => fc.uint8Array({ minLength: n, maxLength: n }));
const plaintext = fc.uint8Array({ maxLength: 300 });
const aad = fc.uint8Array({ maxLength: 64 });

/** The operation either returns or throws a CryptoError; anything else (TypeError, RangeError...) fails. */
function typedFailure(fn: () => unknown): 'ok' | 'error' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof CryptoError, `untyped failure: ${String(err)}`);
    return 'error';
  }
}

test('round trip: aescbc, aesgcm, secretbox, extended nonce', () => {
  fc.assert(fc.property(key([16, 24, 32]), plaintext, fc.uint8Array({ maxLength: 30 }), (k, p, header) => {
    const cbc = new AesCbc(k);
    const sealed = cbc.seal(p, header);
    assert.deepEqual(sealed.subarray(0, header.length), Buffer.from(header));
    assert.deepEqual(cbc.open(sealed.subarray(header.length)), Buffer.from(p));
  }), { numRuns: RUNS });
  fc.assert(fc.property(key([16, 24, 32]), plaintext, aad, (k, p, a) => {
    const gcm = new AesGcm(k);
    assert.deepEqual(gcm.open(gcm.seal(p, a), a), Buffer.from(p));
  }), { numRuns: RUNS });
  fc.assert(fc.property(key([32]), plaintext, fc.uint8Array({ maxLength: 30 }), (k, p, header) => {
    const sb = new Secretbox(k);
    const sealed = sb.seal(p, header);
    assert.deepEqual(sealed.subarray(0, header.length), Buffer.from(header));
    assert.deepEqual(sb.open(sealed.subarray(header.length)), Buffer.from(p));
  }), { numRuns: RUNS });
  fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 64 }), plaintext, aad, (seed, p, a) => {
    const x = new ExtendedNonceGcm(seed);
    assert.deepEqual(x.open(x.seal(p, a), a), Buffer.from(p));
  }), { numRuns: RUNS });
});

test('tamper: any changed byte makes aesgcm, secretbox and extended-nonce reads fail', () => {
  const tampered = (sealed: Buffer, at: number, xor: number) => {
    const copy = Buffer.from(sealed);
    const i = at % copy.length;
    copy[i] = copy[i]! ^ xor;
    return copy;
  };
  fc.assert(fc.property(key([16, 24, 32]), plaintext, aad, fc.nat(), fc.integer({ min: 1, max: 255 }), (k, p, a, at, xor) => {
    const gcm = new AesGcm(k);
    const bad = tampered(gcm.seal(p, a), at, xor);
    assert.equal(typedFailure(() => gcm.open(bad, a)), 'error');
  }), { numRuns: RUNS });
  fc.assert(fc.property(key([32]), plaintext, fc.nat(), fc.integer({ min: 1, max: 255 }), (k, p, at, xor) => {
    const sb = new Secretbox(k);
    const bad = tampered(sb.seal(p), at, xor);
    assert.equal(typedFailure(() => sb.open(bad)), 'error');
  }), { numRuns: RUNS });
  fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), plaintext, aad, fc.nat(), fc.integer({ min: 1, max: 255 }), (seed, p, a, at, xor) => {
    const x = new ExtendedNonceGcm(seed);
    const bad = tampered(x.seal(p, a), at, xor);
    assert.equal(typedFailure(() => x.open(bad, a)), 'error');
  }), { numRuns: RUNS });
});

test('aescbc tamper never crashes (no MAC: it may decode to other bytes or fail the padding check)', () => {
  fc.assert(fc.property(key([16, 24, 32]), plaintext, fc.nat(), fc.integer({ min: 1, max: 255 }), (k, p, at, xor) => {
    const cbc = new AesCbc(k);
    const sealed = cbc.seal(p);
    const i = at % sealed.length;
    sealed[i] = sealed[i]! ^ xor;
    let out: Buffer | undefined;
    if (typedFailure(() => { out = cbc.open(sealed); }) === 'ok') assert.notDeepEqual(out, Buffer.from(p));
  }), { numRuns: RUNS });
});

test('truncation: every prefix of a sealed value is a typed error (or, for aescbc, a different value)', () => {
  fc.assert(fc.property(key([16, 32]), plaintext, aad, fc.nat(), (k, p, a, cut) => {
    const gcm = new AesGcm(k);
    const sealed = gcm.seal(p, a);
    const n = cut % sealed.length;
    assert.equal(typedFailure(() => gcm.open(sealed.subarray(0, n), a)), 'error');
    const sb = new Secretbox(Buffer.concat([Buffer.from(k), Buffer.from(k)]).subarray(0, 32));
    const s2 = sb.seal(p);
    assert.equal(typedFailure(() => sb.open(s2.subarray(0, cut % s2.length))), 'error');
    const x = new ExtendedNonceGcm(Buffer.alloc(32, 7));
    const s3 = x.seal(p, a);
    assert.equal(typedFailure(() => x.open(s3.subarray(0, cut % s3.length), a)), 'error');
    const cbc = new AesCbc(k);
    const s4 = cbc.seal(p);
    const m = cut % s4.length;
    let out: Buffer | undefined;
    if (typedFailure(() => { out = cbc.open(s4.subarray(0, m)); }) === 'ok') {
      // dropping whole trailing blocks can leave a valid-looking padding; it never yields the original
      assert.ok(m >= 32 && m % 16 === 0);
      assert.notDeepEqual(out, Buffer.from(p));
    }
    if (m <= 16) assert.equal(typedFailure(() => cbc.open(s4.subarray(0, m))), 'error');
  }), { numRuns: RUNS });
});

test('authenticated data binds aesgcm and extended-nonce values', () => {
  fc.assert(fc.property(key([16, 24, 32]), plaintext, aad, aad, (k, p, a, b) => {
    fc.pre(!Buffer.from(a).equals(Buffer.from(b)));
    const gcm = new AesGcm(k);
    assert.equal(typedFailure(() => gcm.open(gcm.seal(p, a), b)), 'error');
    const x = new ExtendedNonceGcm(Buffer.concat([Buffer.from(k), Buffer.alloc(32)]));
    assert.equal(typedFailure(() => x.open(x.seal(p, a), b)), 'error');
  }), { numRuns: RUNS });
});
