// The cipher primitives against the vectors of format.md §5 (decode, and re-encode byte-exact with
// the vector's IV/nonce injected) and kube-apiserver's read checks, in order, with their texts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  AesCbc, AesGcm, CryptoError, ExtendedNonceGcm, Secretbox, createPooledNonceSource, fixedNonceSourceForTests, hkdfSha256Expand32,
  openExtendedNonce, sealExtendedNonce,
  ERR_BLOCK_SIZE, ERR_GCM_AUTH, ERR_PKCS7_DATA, ERR_PKCS7_PADDING, ERR_SECRETBOX_OPEN, ERR_SHORT_DATA,
} from '../../src/crypto/index.js';
import { createCipheriv, createHmac, createSecretKey, randomBytes } from 'node:crypto';

const vectors = JSON.parse(readFileSync(new URL('../fixtures/spec/vectors.json', import.meta.url), 'utf8'));
const hex = (s: string) => Buffer.from(s, 'hex');
const b64 = (s: string) => Buffer.from(s, 'base64');
const ascii = (s: string) => Buffer.from(s, 'utf8');

function assertCryptoError(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CryptoError, `expected CryptoError, got ${String(err)}`);
    assert.equal(err.message, message);
    return true;
  });
}

/** The bytes after `k8s:enc:<provider>:v1:<keyName>:` of a derived full etcd value. */
function body(valueHex: string, prefix: string): Buffer {
  const v = hex(valueHex);
  assert.equal(v.subarray(0, prefix.length).toString('latin1'), prefix);
  return v.subarray(prefix.length);
}

test('aesgcm k8s vector (TestGCMLegacyDataCompatibility) opens and re-seals byte-exact', () => {
  const v = vectors.k8s.aesgcm_raw_legacy;
  const ct = hex(v.ciphertextHex);
  assert.equal(new AesGcm(ascii(v.keyAscii)).open(ct, ascii(v.aad)).toString(), v.plaintext);
  const gcm = new AesGcm(ascii(v.keyAscii), { nonceSource: fixedNonceSourceForTests(ct.subarray(0, 12)) });
  assert.deepEqual(gcm.seal(ascii(v.plaintext), ascii(v.aad)), ct);
});

test('hkdf extended-nonce k8s vector: derived key, open, re-seal byte-exact', () => {
  const v = vectors.k8s.hkdf_xnonce_raw_legacy;
  const ct = hex(v.ciphertextHex);
  const seed = hex(v.seedHex);
  assert.equal(hkdfSha256Expand32(seed, ct.subarray(0, 32)).toString('hex'), v.derivedKeyHex);
  // expand-only HKDF with one block is HMAC(seed, info ‖ 0x01) — an independent computation:
  assert.equal(createHmac('sha256', seed).update(Buffer.concat([ct.subarray(0, 32), Buffer.of(1)])).digest('hex'), v.derivedKeyHex);
  assert.equal(openExtendedNonce(seed, ct, ascii(v.aad)).toString(), v.plaintext);
  const x = new ExtendedNonceGcm(seed, { nonceSource: fixedNonceSourceForTests(ct.subarray(0, 32), ct.subarray(32, 44)) });
  assert.deepEqual(x.seal(ascii(v.plaintext), ascii(v.aad)), ct);
  assert.deepEqual(
    sealExtendedNonce(seed, ascii(v.plaintext), ascii(v.aad), { nonceSource: fixedNonceSourceForTests(ct.subarray(0, 32), ct.subarray(32, 44)) }),
    ct,
  );
});

test('derived aescbc vector opens and re-seals byte-exact behind its prefix', () => {
  const v = vectors.derived.aescbc;
  const prefix = `k8s:enc:aescbc:v1:${v.keyName}:`;
  const data = body(v.etcdValueHex, prefix);
  assert.equal(new AesCbc(b64(v.keyB64)).open(data).toString(), v.plaintext);
  const cbc = new AesCbc(b64(v.keyB64), { nonceSource: fixedNonceSourceForTests(hex(v.ivHex)) });
  assert.deepEqual(cbc.seal(ascii(v.plaintext), ascii(prefix)), hex(v.etcdValueHex));
});

test('derived secretbox vector opens and re-seals byte-exact behind its prefix', () => {
  const v = vectors.derived.secretbox;
  const prefix = `k8s:enc:secretbox:v1:${v.keyName}:`;
  const data = body(v.etcdValueHex, prefix);
  assert.equal(new Secretbox(b64(v.keyB64)).open(data).toString(), v.plaintext);
  const sb = new Secretbox(b64(v.keyB64), { nonceSource: fixedNonceSourceForTests(hex(v.nonceHex)) });
  assert.deepEqual(sb.seal(ascii(v.plaintext), ascii(prefix)), hex(v.etcdValueHex));
  // and without a header
  const sb2 = new Secretbox(b64(v.keyB64), { nonceSource: fixedNonceSourceForTests(hex(v.nonceHex)) });
  assert.deepEqual(sb2.seal(ascii(v.plaintext)), data);
});

test('derived aesgcm vector opens and re-seals byte-exact behind its prefix', () => {
  const v = vectors.derived.aesgcm;
  const prefix = `k8s:enc:aesgcm:v1:${v.keyName}:`;
  const data = body(v.etcdValueHex, prefix);
  assert.equal(new AesGcm(b64(v.keyB64)).open(data, ascii(v.aad)).toString(), v.plaintext);
  const gcm = new AesGcm(b64(v.keyB64), { nonceSource: fixedNonceSourceForTests(data.subarray(0, 12)) });
  assert.deepEqual(gcm.seal(ascii(v.plaintext), ascii(v.aad), ascii(prefix)), hex(v.etcdValueHex));
});

test('aescbc read checks run in Go order with Go texts', () => {
  const key = randomBytes(32);
  const cbc = new AesCbc(key);
  assertCryptoError(() => cbc.open(Buffer.alloc(0)), ERR_SHORT_DATA);
  assertCryptoError(() => cbc.open(Buffer.alloc(15)), ERR_SHORT_DATA);
  assertCryptoError(() => cbc.open(Buffer.alloc(17)), ERR_BLOCK_SIZE);
  assertCryptoError(() => cbc.open(Buffer.alloc(16 + 31)), ERR_BLOCK_SIZE);
  // IV only: Go panics (result[-1]); we return the "empty" error
  assertCryptoError(() => cbc.open(Buffer.alloc(16)), ERR_PKCS7_DATA);

  // Hand-made blocks with chosen "padding" (no padding by OpenSSL): last byte 0, > length, mismatch.
  const raw = (plain: Buffer) => {
    const iv = randomBytes(16);
    const c = createCipheriv('aes-256-cbc', key, iv).setAutoPadding(false);
    return Buffer.concat([iv, c.update(plain), c.final()]);
  };
  assertCryptoError(() => cbc.open(raw(Buffer.alloc(16, 0))), ERR_PKCS7_DATA);
  assertCryptoError(() => cbc.open(raw(Buffer.alloc(16, 17))), ERR_PKCS7_DATA);
  const mismatch = Buffer.alloc(16, 4);
  mismatch[13] = 9;
  assertCryptoError(() => cbc.open(raw(mismatch)), ERR_PKCS7_PADDING);
  // Go's leniency: a pad byte > 16 is accepted when all those bytes match
  const lenient = Buffer.concat([ascii('hello world!'), Buffer.alloc(20, 20)]);
  assert.equal(cbc.open(raw(lenient)).toString(), 'hello world!');
  // a whole-block pad of 32 bytes over two blocks: empty plaintext
  assert.equal(cbc.open(raw(Buffer.alloc(32, 32))).length, 0);
});

test('aescbc pads a block-aligned plaintext with a whole block', () => {
  const cbc = new AesCbc(randomBytes(16));
  assert.equal(cbc.seal(Buffer.alloc(16)).length, 16 + 32);
  assert.equal(cbc.seal(Buffer.alloc(0)).length, 16 + 16);
  assert.equal(cbc.seal(Buffer.alloc(15)).length, 16 + 16);
  assert.equal(cbc.open(cbc.seal(Buffer.alloc(0))).length, 0);
});

test('aesgcm read checks and texts', () => {
  const gcm = new AesGcm(randomBytes(24));
  assertCryptoError(() => gcm.open(Buffer.alloc(11), Buffer.alloc(0)), ERR_SHORT_DATA);
  assertCryptoError(() => gcm.open(Buffer.alloc(12), Buffer.alloc(0)), ERR_GCM_AUTH);
  assertCryptoError(() => gcm.open(Buffer.alloc(27), Buffer.alloc(0)), ERR_GCM_AUTH);
  assertCryptoError(() => gcm.open(Buffer.alloc(40), Buffer.alloc(0)), ERR_GCM_AUTH);
  const sealed = gcm.seal(ascii('x'), ascii('/registry/secrets/a/b'));
  assertCryptoError(() => gcm.open(sealed, ascii('/registry/secrets/a/c')), ERR_GCM_AUTH);
  assert.equal(gcm.open(gcm.seal(Buffer.alloc(0), Buffer.alloc(0)), Buffer.alloc(0)).length, 0);
});

test('secretbox read checks and texts; key must be 32 bytes', () => {
  const sb = new Secretbox(randomBytes(32));
  assertCryptoError(() => sb.open(Buffer.alloc(39)), ERR_SHORT_DATA);
  assertCryptoError(() => sb.open(Buffer.alloc(40)), ERR_SECRETBOX_OPEN);
  assert.equal(sb.open(sb.seal(Buffer.alloc(0))).length, 0);
  assertCryptoError(() => new Secretbox(randomBytes(16)), 'expected key size 32 for secretbox provider, got 16');
});

test('AES keys must be 16, 24 or 32 bytes', () => {
  assertCryptoError(() => new AesGcm(randomBytes(31)), 'crypto/aes: invalid key size 31');
  assertCryptoError(() => new AesCbc(randomBytes(0)), 'crypto/aes: invalid key size 0');
});

test('aesgcm over a KeyObject is the same cipher as over its raw bytes; its size is checked too', () => {
  const raw = randomBytes(32);
  const byBytes = new AesGcm(raw);
  const byObject = new AesGcm(createSecretKey(raw));
  const aad = ascii('/registry/secrets/a/b');
  assert.deepEqual(byObject.open(byBytes.seal(ascii('x'), aad), aad), ascii('x'));
  assert.deepEqual(byBytes.open(byObject.seal(ascii('y'), aad, ascii('head')).subarray(4), aad), ascii('y'));
  assertCryptoError(() => new AesGcm(createSecretKey(randomBytes(31))), 'crypto/aes: invalid key size 31');
});

test('extended nonce: short seed, short data, cache keyed by storage key and info', () => {
  assertCryptoError(() => new ExtendedNonceGcm(randomBytes(31)), 'invalid seed length 31 used for key generation');
  let now = 1_000_000;
  const x = new ExtendedNonceGcm(randomBytes(32), { now: () => now, cacheTtlMs: 1000 });
  const y = new ExtendedNonceGcm(randomBytes(32));
  assertCryptoError(() => y.open(Buffer.alloc(31), Buffer.alloc(0)), ERR_SHORT_DATA);
  assertCryptoError(() => y.open(Buffer.alloc(32 + 27), Buffer.alloc(0)), ERR_GCM_AUTH);
  const a = ascii('/registry/secrets/ns/a');
  const b = ascii('/registry/secrets/ns/b');
  const v1 = x.seal(ascii('one'), a);
  const v2 = x.seal(ascii('two'), a);
  assert.notDeepEqual(v1.subarray(0, 32), v2.subarray(0, 32), 'fresh info per write');
  assert.equal(x.open(v1, a).toString(), 'one');
  assert.equal(x.open(v2, a).toString(), 'two'); // same storage key, different info: re-derived
  assert.equal(x.open(x.seal(ascii('three'), b), b).toString(), 'three');
  assert.equal(x.cachedKeys, 2);
  now += 5000; // expired entries are served until a sweep, which happens on the next insert
  assert.equal(x.open(v2, a).toString(), 'two');
  assert.equal(x.cachedKeys, 2);
  x.open(v1, a); // new info for `a`: inserts, sweeps the expired `b`
  assert.equal(x.cachedKeys, 1);
  assertCryptoError(() => x.open(v1, b), ERR_GCM_AUTH);
});

test('pooled nonce source: fresh bytes across refills, never handed out twice', () => {
  const draw = createPooledNonceSource(64);
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const n = Buffer.alloc(i % 3 === 0 ? 24 : 12);
    draw(n);
    seen.add(n.toString('hex'));
  }
  assert.equal(seen.size, 2000);
  const big = Buffer.alloc(100); // larger than the pool: drawn directly
  draw(big);
  assert.notDeepEqual(big, Buffer.alloc(100));
  // two ciphers with the same key never share nonces (each has its own pool)
  const k = randomBytes(16);
  const a = new AesGcm(k).seal(Buffer.alloc(0), Buffer.alloc(0));
  const b = new AesGcm(k).seal(Buffer.alloc(0), Buffer.alloc(0));
  assert.notDeepEqual(a.subarray(0, 12), b.subarray(0, 12));
});

test('fixed nonce source fails closed when it runs out', () => {
  const gcm = new AesGcm(randomBytes(16), { nonceSource: fixedNonceSourceForTests(Buffer.alloc(12)) });
  gcm.seal(ascii('a'), Buffer.alloc(0));
  assert.throws(() => gcm.seal(ascii('b'), Buffer.alloc(0)), /fixed nonce source/);
});
