// The KMIP codec without a server: the TTLV examples of the KMIP 1.x spec (section 9.1.2), byte
// equality with messages encoded by PyKMIP (test/fixtures/kmip/pykmip-messages.json, made by
// make-fixtures.py), round-trip and malformed-input properties, the wrapped-key format and the
// backend's flag validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { KmipError } from '../../src/plugin/kmip/errors.js';
import {
  ItemType,
  bigInteger,
  boolean,
  bytes,
  dateTime,
  decodeTtlv,
  encodeTtlv,
  enumeration,
  integer,
  interval,
  longInteger,
  struct,
  text,
  ttlvMessageSize,
  type TtlvItem,
} from '../../src/plugin/kmip/ttlv.js';
import {
  createAesKeyPayload,
  decodeResponse,
  decryptPayload,
  encodeRequest,
  encryptPayload,
  locatePayload,
  revokePayload,
} from '../../src/plugin/kmip/messages.js';
import { Operation, ResultReason, RevocationReasonCode, Tag } from '../../src/plugin/kmip/tags.js';
import { encodeWrapped, parseWrapped, wrappedHeader } from '../../src/plugin/kmip/wrapped.js';
import { parseEndpoint, readKmipSettings } from '../../src/plugin/kmip/config.js';
import { BackendError } from '../../src/plugin/backend.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-fA-F]/g, ''), 'hex');
const fixtures = JSON.parse(readFileSync(new URL('../fixtures/kmip/pykmip-messages.json', import.meta.url), 'utf8')) as Record<string, string>;
const fixture = (name: string): Buffer => Buffer.from(fixtures[name]!, 'hex');

/** Asserts that `fn` throws a KmipError with `code` (and returns it). */
function throwsKmip(fn: () => unknown, code: string, message?: RegExp): KmipError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof KmipError, `expected KmipError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail('expected a KmipError');
}

test('TTLV: the KMIP spec examples encode to and decode from the spec bytes', () => {
  const cases: Array<[TtlvItem, string]> = [
    [integer(0x420020, 8), '42 00 20 | 02 | 00 00 00 04 | 00 00 00 08 00 00 00 00'],
    [longInteger(0x420020, 123456789000000000n), '42 00 20 | 03 | 00 00 00 08 | 01 B6 9B 4B A5 74 92 00'],
    [bigInteger(0x420020, 1234567890000000000000000000n), '42 00 20 | 04 | 00 00 00 10 | 00 00 00 00 03 FD 35 EB 6B C2 DF 46 18 08 00 00'],
    [enumeration(0x420020, 255), '42 00 20 | 05 | 00 00 00 04 | 00 00 00 FF 00 00 00 00'],
    [boolean(0x420020, true), '42 00 20 | 06 | 00 00 00 08 | 00 00 00 00 00 00 00 01'],
    [text(0x420020, 'Hello World'), '42 00 20 | 07 | 00 00 00 0B | 48 65 6C 6C 6F 20 57 6F 72 6C 64 00 00 00 00 00'],
    [bytes(0x420020, Buffer.from([1, 2, 3])), '42 00 20 | 08 | 00 00 00 03 | 01 02 03 00 00 00 00 00'],
    // Friday, March 14, 2008, 11:56:40 GMT
    [dateTime(0x420020, BigInt(Date.UTC(2008, 2, 14, 11, 56, 40) / 1000)), '42 00 20 | 09 | 00 00 00 08 | 00 00 00 00 47 DA 67 F8'],
    [interval(0x420020, 10 * 24 * 3600), '42 00 20 | 0A | 00 00 00 04 | 00 0D 2F 00 00 00 00 00'],
    [
      struct(0x420020, [enumeration(0x420004, 254), integer(0x420005, 255)]),
      '42 00 20 | 01 | 00 00 00 20 | 42 00 04 | 05 | 00 00 00 04 | 00 00 00 FE 00 00 00 00 | 42 00 05 | 02 | 00 00 00 04 | 00 00 00 FF 00 00 00 00',
    ],
    // Two's complement: negative Big Integers are sign-extended to whole 8-byte blocks.
    [bigInteger(0x420020, -1n), '42 00 20 | 04 | 00 00 00 08 | FF FF FF FF FF FF FF FF'],
    [bigInteger(0x420020, 18446744073709551615n), '42 00 20 | 04 | 00 00 00 10 | 00 00 00 00 00 00 00 00 FF FF FF FF FF FF FF FF'],
  ];
  for (const [item, bytesText] of cases) {
    const expected = hex(bytesText);
    assert.deepEqual(encodeTtlv(item), expected, `encode ${bytesText}`);
    assert.deepEqual(decodeTtlv(expected), item, `decode ${bytesText}`);
  }
});

test('requests: our encoder produces the bytes PyKMIP produces for the same requests', () => {
  const v14 = { major: 1, minor: 4 };
  const max = 1048576;
  assert.deepEqual(encodeRequest(Operation.Create, createAesKeyPayload({ names: ['fam/v1'], objectGroup: 'fam' }), v14, max), fixture('create'));
  assert.deepEqual(encodeRequest(Operation.Locate, locatePayload({ symmetricKeysOnly: true, name: 'fam/v2', objectGroup: 'fam' }), v14, max), fixture('locate'));
  const data = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
  assert.deepEqual(encodeRequest(Operation.Encrypt, encryptPayload('42', data, { mode: 'gcm', aad: Buffer.from('header') }), v14, max), fixture('encryptGcm'));
  const iv = Buffer.from(Array.from({ length: 16 }, (_, i) => i));
  assert.deepEqual(encodeRequest(Operation.Decrypt, decryptPayload('42', Buffer.alloc(48), { mode: 'cbc', iv }), { major: 1, minor: 2 }, max), fixture('decryptCbc'));
  assert.deepEqual(encodeRequest(Operation.Revoke, revokePayload('42', RevocationReasonCode.KeyCompromise), v14, max), fixture('revoke'));
  assert.deepEqual(encodeRequest(Operation.DiscoverVersions, [], { major: 1, minor: 1 }, max), fixture('discoverVersions'));
});

test('responses: PyKMIP-encoded responses decode; a failed status becomes KMIP_RESULT with its reason', () => {
  const payload = decodeResponse(fixture('encryptResponse'), Operation.Encrypt, 1 << 20);
  assert.equal(payload.type, ItemType.Structure);
  const byTag = new Map((payload.value as TtlvItem[]).map((c) => [c.tag, c.value]));
  assert.equal(byTag.get(Tag.UniqueIdentifier), '42');
  assert.deepEqual(byTag.get(Tag.AuthenticatedEncryptionTag), Buffer.from(Array.from({ length: 16 }, (_, i) => 16 + i)));
  const locate = decodeResponse(fixture('locateResponse'), Operation.Locate, 1 << 20);
  assert.deepEqual((locate.value as TtlvItem[]).map((c) => c.value), ['7', '3']);

  const err = throwsKmip(() => decodeResponse(fixture('failureResponse'), Operation.Encrypt, 1 << 20), 'KMIP_RESULT', /Encrypt failed: Permission Denied \(The encryption key must be in the Active state\)/);
  assert.equal(err.resultReason, ResultReason.PermissionDenied);
  // A response to another operation is refused.
  throwsKmip(() => decodeResponse(fixture('encryptResponse'), Operation.Decrypt, 1 << 20), 'KMIP_PROTOCOL', /response is for Encrypt/);
  // A request is not a response.
  throwsKmip(() => decodeResponse(fixture('create'), Operation.Create, 1 << 20), 'KMIP_PROTOCOL', /not a KMIP Response Message/);
});

// ---------- properties ----------

const tagArb = fc.integer({ min: 0x420000, max: 0x42ffff });
const leafArb: fc.Arbitrary<TtlvItem> = fc.oneof(
  fc.tuple(tagArb, fc.integer({ min: -0x80000000, max: 0x7fffffff })).map(([t, v]) => integer(t, v)),
  fc.tuple(tagArb, fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n })).map(([t, v]) => longInteger(t, v)),
  fc.tuple(tagArb, fc.bigInt({ min: -(1n << 300n), max: 1n << 300n })).map(([t, v]) => bigInteger(t, v)),
  fc.tuple(tagArb, fc.integer({ min: 0, max: 0xffffffff })).map(([t, v]) => enumeration(t, v)),
  fc.tuple(tagArb, fc.boolean()).map(([t, v]) => boolean(t, v)),
  fc.tuple(tagArb, fc.string({ unit: 'binary', maxLength: 40 })).map(([t, v]) => text(t, v)),
  fc.tuple(tagArb, fc.uint8Array({ maxLength: 40 })).map(([t, v]) => bytes(t, Buffer.from(v))),
  fc.tuple(tagArb, fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n })).map(([t, v]) => dateTime(t, v)),
  fc.tuple(tagArb, fc.integer({ min: 0, max: 0xffffffff })).map(([t, v]) => interval(t, v)),
);
const itemArb: fc.Arbitrary<TtlvItem> = fc.letrec<{ item: TtlvItem }>((tie) => ({
  item: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leafArb,
    fc.tuple(tagArb, fc.array(tie('item'), { maxLength: 5 })).map(([t, v]) => struct(t, v)),
  ),
})).item;

test('TTLV property: decode(encode(x)) equals x, and every encoding is 8-byte aligned', () => {
  fc.assert(
    fc.property(itemArb, (item) => {
      const enc = encodeTtlv(item);
      assert.equal(enc.length % 8, 0);
      assert.deepEqual(decodeTtlv(enc), item);
    }),
    { numRuns: 400 },
  );
});

/** Decoding arbitrary bytes either succeeds or fails with KmipError KMIP_MALFORMED — nothing else. */
function decodeOnlyFailsCleanly(data: Uint8Array): void {
  try {
    const item = decodeTtlv(data, { maxBytes: 1 << 16 });
    // Whatever decodes must re-encode to the same bytes (the decoder is strict, so canonical).
    assert.deepEqual(encodeTtlv(item), Buffer.from(data));
  } catch (e) {
    if (!(e instanceof KmipError) || e.code !== 'KMIP_MALFORMED') throw e;
    assert.ok(e.offset !== undefined && e.offset >= 0 && e.offset <= data.length, `offset ${e.offset} within input`);
  }
}

test('TTLV property: random bytes never crash the decoder', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), decodeOnlyFailsCleanly), { numRuns: 2000 });
  // Random bytes behind a plausible header get further into the decoder.
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 12 }), fc.uint8Array({ maxLength: 200 }), (tag, type, body) => {
      const head = Buffer.alloc(8);
      head.writeUIntBE(0x420000 + tag, 0, 3);
      head[3] = type;
      head.writeUInt32BE(body.length, 4);
      decodeOnlyFailsCleanly(Buffer.concat([head, body]));
    }),
    { numRuns: 2000 },
  );
});

test('TTLV property: mutated, truncated and extended valid messages never crash the decoder', () => {
  fc.assert(
    fc.property(
      itemArb,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.nat(),
      fc.uint8Array({ maxLength: 16 }),
      (item, flips, cut, extra) => {
        const enc = encodeTtlv(item);
        const mutated = Buffer.from(enc);
        for (const [at, v] of flips) mutated[at % mutated.length] = v;
        decodeOnlyFailsCleanly(mutated);
        decodeOnlyFailsCleanly(enc.subarray(0, cut % (enc.length + 1)));
        decodeOnlyFailsCleanly(Buffer.concat([enc, extra]));
      },
    ),
    { numRuns: 500 },
  );
});

test('TTLV: malformed inputs fail with KMIP_MALFORMED naming the offset', () => {
  throwsKmip(() => decodeTtlv(hex('42 00 20 02 00 00 00 04 00 00 00 08 00 00 00 01')), 'KMIP_MALFORMED', /non-zero padding/);
  throwsKmip(() => decodeTtlv(hex('42 00 20 06 00 00 00 08 00 00 00 00 00 00 00 02')), 'KMIP_MALFORMED', /Boolean .* neither 0 nor 1/);
  throwsKmip(() => decodeTtlv(hex('42 00 20 02 00 00 00 08 00 00 00 08 00 00 00 00')), 'KMIP_MALFORMED', /length 8, expected 4/);
  throwsKmip(() => decodeTtlv(hex('42 00 20 07 00 00 00 02 C3 28 00 00 00 00 00 00')), 'KMIP_MALFORMED', /not valid UTF-8/);
  throwsKmip(() => decodeTtlv(hex('42 00 20 0B 00 00 00 00')), 'KMIP_MALFORMED', /unknown item type 0x0b/);
  throwsKmip(() => decodeTtlv(hex('13 00 20 02 00 00 00 04 00 00 00 08 00 00 00 00')), 'KMIP_MALFORMED', /not a KMIP tag/);
  throwsKmip(() => decodeTtlv(hex('42 00 20 08 FF FF FF F0 00 00 00 00 00 00 00 00')), 'KMIP_MALFORMED', /exceeds/);
  throwsKmip(() => decodeTtlv(hex('42 00 20 04 00 00 00 00')), 'KMIP_MALFORMED', /Big Integer/);
  throwsKmip(() => decodeTtlv(Buffer.concat([encodeTtlv(integer(0x420020, 1)), Buffer.alloc(8)])), 'KMIP_MALFORMED', /trailing/);
  // The error points at the inner item: a bad Integer 8 bytes into a Structure.
  const inner = throwsKmip(
    () => decodeTtlv(hex('42 00 20 01 00 00 00 10 | 42 00 04 02 00 00 00 03 00 00 00 01 00 00 00 00')),
    'KMIP_MALFORMED',
    /at byte 8/,
  );
  assert.equal(inner.offset, 8);
  // A structure whose child overruns it.
  throwsKmip(() => decodeTtlv(hex('42 00 20 01 00 00 00 08 | 42 00 04 02 00 00 00 04 00 00 00 01 00 00 00 00')), 'KMIP_MALFORMED', /truncated/);
});

test('TTLV: depth, size and item-count caps', () => {
  let deep: TtlvItem = integer(0x420001, 1);
  for (let i = 0; i < 20; i++) deep = struct(0x420001, [deep]);
  throwsKmip(() => decodeTtlv(encodeTtlv(deep)), 'KMIP_MALFORMED', /nesting deeper than 16/);
  assert.deepEqual(decodeTtlv(encodeTtlv(deep), { maxDepth: 32 }), deep);
  const wide = struct(0x420001, Array.from({ length: 50 }, () => boolean(0x420002, true)));
  throwsKmip(() => decodeTtlv(encodeTtlv(wide), { maxItems: 10 }), 'KMIP_MALFORMED', /more than 10 items/);
  // 1 MiB of empty Structures inside one: refused at the default item cap, long before the end.
  const flood = Buffer.alloc(1 << 20);
  flood.writeUInt32BE(0x42000101, 0);
  flood.writeUInt32BE(flood.length - 8, 4);
  for (let at = 8; at < flood.length; at += 8) flood.writeUInt32BE(0x42000201, at);
  throwsKmip(() => decodeTtlv(flood), 'KMIP_MALFORMED', /more than 10000 items/);
  throwsKmip(() => decodeTtlv(encodeTtlv(bytes(0x420001, Buffer.alloc(100))), { maxBytes: 64 }), 'KMIP_MALFORMED', /exceeds the 64-byte limit/);
  // Stream framing reads only the header, and refuses oversized or odd messages before reading more.
  assert.equal(ttlvMessageSize(hex('42 00 7B 01 00 00 01 00')), 264);
  throwsKmip(() => ttlvMessageSize(hex('42 00 7B 01 7F FF FF F8')), 'KMIP_MALFORMED', /exceeds/);
  throwsKmip(() => ttlvMessageSize(hex('42 00 7B 02 00 00 00 04')), 'KMIP_MALFORMED', /not a Structure/);
});

test('TTLV: the encoder refuses values that do not fit their type', () => {
  throwsKmip(() => encodeTtlv(integer(0x420001, 2 ** 31)), 'KMIP_ENCODE', /signed 32-bit/);
  throwsKmip(() => encodeTtlv(enumeration(0x420001, -1)), 'KMIP_ENCODE', /unsigned 32-bit/);
  throwsKmip(() => encodeTtlv(longInteger(0x420001, 1n << 63n)), 'KMIP_ENCODE', /signed 64-bit/);
  throwsKmip(() => encodeTtlv(text(0x420001, '\uD800')), 'KMIP_ENCODE', /lone surrogate/);
  throwsKmip(() => encodeTtlv(integer(0x1000000, 1)), 'KMIP_ENCODE', /3-byte/);
});

// ---------- wrapped key format ----------

test('wrapped key: layout round trip, and parse never throws on arbitrary bytes', () => {
  const header = wrappedHeader('gcm', '17');
  const ct = encodeWrapped(header, { iv: Buffer.alloc(16, 1), tag: Buffer.alloc(16, 2), data: Buffer.alloc(32, 3) });
  assert.deepEqual(ct.subarray(0, 5), Buffer.from([0x01, 0x01, 0x02, 0x31, 0x37]));
  const p = parseWrapped(ct);
  assert.ok('wrapped' in p);
  assert.equal(p.wrapped.uid, '17');
  assert.equal(p.wrapped.mode, 'gcm');
  assert.deepEqual(p.header, header);
  assert.deepEqual(p.wrapped.data, Buffer.alloc(32, 3));
  const cbc = parseWrapped(encodeWrapped(wrappedHeader('cbc', 'abc'), { iv: Buffer.alloc(16), data: Buffer.alloc(48) }));
  assert.ok('wrapped' in cbc && cbc.wrapped.mode === 'cbc' && cbc.wrapped.tag === undefined);
  assert.match((parseWrapped(Buffer.from([2, 1, 1, 0x31])) as { error: string }).error, /format version 2/);
  assert.match((parseWrapped(ct.subarray(0, 30)) as { error: string }).error, /truncated|no wrapped data/);
  assert.match((parseWrapped(Buffer.alloc(1025, 1)) as { error: string }).error, /exceeds 1024/);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), (b) => {
      const r = parseWrapped(b);
      assert.ok('error' in r || 'wrapped' in r);
    }),
    { numRuns: 2000 },
  );
});

// ---------- flags ----------

test('kmip flags: endpoint syntax, required flags named, client key file must be private', async () => {
  assert.deepEqual(parseEndpoint('kms.example.com:5696'), { host: 'kms.example.com', port: 5696 });
  assert.deepEqual(parseEndpoint('[::1]:5696'), { host: '::1', port: 5696 });
  assert.throws(() => parseEndpoint('kms.example.com'), /--kmip-endpoint must be HOST:PORT/);
  assert.throws(() => parseEndpoint('h:70000'), /--kmip-endpoint/);

  const dir = await mkdtemp(path.join(os.tmpdir(), 'atrest-kmip-flags-'));
  try {
    const pem = '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n';
    for (const f of ['ca.pem', 'cert.pem', 'key.pem']) await writeFile(path.join(dir, f), pem, { mode: 0o600 });
    const base = {
      kmipEndpoint: '127.0.0.1:5696',
      kmipCa: path.join(dir, 'ca.pem'),
      kmipCert: path.join(dir, 'cert.pem'),
      kmipKey: path.join(dir, 'key.pem'),
      kmipKeyName: 'cluster-kek',
    };
    const s = await readKmipSettings(base);
    assert.equal(s.keyName, 'cluster-kek');
    assert.equal(s.cipher, 'auto');
    assert.equal(s.timeoutMs, 5000);

    const fails = async (opts: Record<string, string | undefined>, re: RegExp): Promise<void> => {
      await assert.rejects(readKmipSettings(opts), (e: unknown) => e instanceof BackendError && e.code === 'CONFIG' && re.test(e.message));
    };
    await fails({ ...base, kmipKeyName: undefined }, /--kmip-key-name is required/);
    await fails({ ...base, kmipCa: undefined }, /--kmip-ca is required/);
    await fails({ ...base, kmipKeyName: 'bad/name' }, /--kmip-key-name "bad\/name" may hold only/);
    await fails({ ...base, kmipCipher: 'ecb' }, /--kmip-cipher must be auto, gcm or cbc/);
    await fails({ ...base, kmipTimeoutMs: '0' }, /--kmip-timeout-ms must be an integer/);
    await fails({ ...base, kmipCert: path.join(dir, 'missing.pem') }, /--kmip-cert .*missing\.pem: cannot read \(ENOENT\)/);
    await chmod(path.join(dir, 'key.pem'), 0o644);
    await fails(base, /--kmip-key .*readable by group or others \(mode 644\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
