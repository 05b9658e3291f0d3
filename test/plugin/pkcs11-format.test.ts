// The pkcs11 backend's pure parts: ciphertext layout, key-wrap inner value, flags and the PIN file.
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BackendError } from '../../src/plugin/backend.js';
import {
  MAX_CIPHERTEXT_BYTES,
  MECH_AES_GCM,
  MECH_AES_KWP,
  decodeKwpInner,
  encodeHeader,
  encodeKwpInner,
  maxPlaintextBytes,
  parseCiphertext,
} from '../../src/plugin/pkcs11/ciphertext.js';
import { CKR, ckrName, describePkcs11Error, isConnectionLost, mayBeBadCiphertext } from '../../src/plugin/pkcs11/ckr.js';
import { loadPkcs11Config, optionKey, pkcs11Flags, readPinFile } from '../../src/plugin/pkcs11/config.js';
import { ckDate, keyIdOf, newKeyVersionId, parseCkDate } from '../../src/plugin/pkcs11/key-objects.js';

function isCode(code: string, pattern?: RegExp) {
  return (err: unknown) => err instanceof BackendError && err.code === code && (pattern === undefined || pattern.test(err.message));
}

describe('pkcs11 ciphertext layout', () => {
  const id = Buffer.from('00000002a1a2a3a4a5a6a7a8', 'hex');

  it('round-trips the header and splits the body', () => {
    const header = encodeHeader(MECH_AES_GCM, id);
    assert.deepEqual([...header.subarray(0, 3)], [1, MECH_AES_GCM, 12]);
    const body = Buffer.alloc(12 + 32 + 16, 5);
    const parsed = parseCiphertext(Buffer.concat([header, body]));
    assert.equal(parsed.mechanism, MECH_AES_GCM);
    assert.deepEqual(parsed.keyVersionId, id);
    assert.deepEqual(parsed.header, header);
    assert.deepEqual(parsed.body, body);
  });

  it('rejects malformed ciphertexts as INVALID_CIPHERTEXT', () => {
    const good = Buffer.concat([encodeHeader(MECH_AES_GCM, id), Buffer.alloc(28)]);
    const cases: Array<[string, Buffer]> = [
      ['empty', Buffer.alloc(0)],
      ['short header', Buffer.from([1, 1])],
      ['unknown format', Buffer.concat([Buffer.from([2]), good.subarray(1)])],
      ['unknown mechanism', Buffer.concat([Buffer.from([1, 9]), good.subarray(2)])],
      ['empty id', Buffer.concat([Buffer.from([1, 1, 0]), Buffer.alloc(40)])],
      ['id longer than the data', Buffer.from([1, 1, 200, 1, 2, 3])],
      ['body shorter than iv + tag', good.subarray(0, good.length - 1)],
      ['too long', Buffer.concat([good, Buffer.alloc(MAX_CIPHERTEXT_BYTES)])],
      ['kwp body not a multiple of 8', Buffer.concat([encodeHeader(MECH_AES_KWP, id), Buffer.alloc(25)])],
    ];
    for (const [name, bytes] of cases) {
      assert.throws(() => parseCiphertext(bytes), isCode('INVALID_CIPHERTEXT', /malformed/), name);
    }
    assert.doesNotThrow(() => parseCiphertext(good));
  });

  it('limits plaintexts so ciphertexts stay within 1024 bytes', () => {
    assert.equal(maxPlaintextBytes(MECH_AES_GCM, 12), 1024 - 15 - 28);
    const kwpMax = maxPlaintextBytes(MECH_AES_KWP, 12);
    const inner = encodeKwpInner(id, Buffer.alloc(kwpMax));
    assert.ok(15 + inner.length + 8 <= 1024);
    assert.ok(15 + encodeKwpInner(id, Buffer.alloc(kwpMax + 1)).length + 8 > 1024);
  });

  it('binds the key id and length inside the key-wrap value', () => {
    for (const size of [0, 1, 2, 31, 32, 100]) {
      const plain = Buffer.alloc(size, 0xab);
      const inner = encodeKwpInner(id, plain);
      assert.equal(inner.length % 8, 0);
      assert.ok(inner.length >= 16);
      assert.deepEqual(decodeKwpInner(inner, id), plain);
      // A token that strips nothing and one that pads more both decode the same.
      assert.deepEqual(decodeKwpInner(Buffer.concat([inner, Buffer.alloc(8)]), id), plain);
    }
    const inner = encodeKwpInner(id, Buffer.alloc(32, 1));
    const otherId = Buffer.from(id);
    otherId.writeUInt8(otherId.readUInt8(11) ^ 1, 11);
    assert.throws(() => decodeKwpInner(inner, otherId), isCode('INVALID_CIPHERTEXT', /key id mismatch/));
    const badLength = Buffer.from(inner);
    badLength.writeUInt16BE(500, 12);
    assert.throws(() => decodeKwpInner(badLength, id), isCode('INVALID_CIPHERTEXT', /length or padding/));
    const badPadding = encodeKwpInner(id, Buffer.alloc(3, 1));
    badPadding[badPadding.length - 1] = 7;
    assert.throws(() => decodeKwpInner(badPadding, id), isCode('INVALID_CIPHERTEXT', /length or padding/));
  });

  it('CK_DATE: writes the UTC day, reads midnight UTC, ignores blank and impossible dates', () => {
    assert.equal(ckDate(new Date('2026-03-04T23:59:59.999Z')).toString('ascii'), '20260304');
    assert.equal(parseCkDate(Buffer.from('20260304')), Date.UTC(2026, 2, 4));
    assert.equal(parseCkDate(ckDate(new Date('2024-02-29T12:00:00Z'))), Date.UTC(2024, 1, 29));
    for (const bad of ['', '        ', '00000000', '20250229', '20261301', '2026030', '2026-3-4', '19691231']) {
      assert.equal(parseCkDate(Buffer.from(bad, 'ascii')), undefined, JSON.stringify(bad));
    }
    assert.equal(parseCkDate(undefined), undefined);
  });

  it('key version ids carry the version number and a random part; key_id is readable', () => {
    const a = newKeyVersionId(7);
    const b = newKeyVersionId(7);
    assert.equal(a.length, 12);
    assert.equal(a.readUInt32BE(0), 7);
    assert.notDeepEqual(a, b);
    assert.equal(keyIdOf('tok', 'kek', a.toString('hex')), `pkcs11:tok:kek:${a.toString('hex')}`);
  });
});

describe('pkcs11 CKR classification', () => {
  it('names codes and classifies lost tokens and failed authentication', () => {
    const err = (code: number) => Object.assign(new Error('x'), { code, method: 'C_Decrypt' });
    assert.equal(ckrName(CKR.PIN_INCORRECT), 'CKR_PIN_INCORRECT');
    assert.equal(ckrName(0x7777), 'CKR 0x7777');
    assert.equal(describePkcs11Error(err(CKR.DEVICE_REMOVED)), 'CKR_DEVICE_REMOVED in C_Decrypt');
    assert.ok(isConnectionLost(err(CKR.SESSION_HANDLE_INVALID)));
    assert.ok(isConnectionLost(err(CKR.DEVICE_REMOVED)));
    assert.ok(!isConnectionLost(err(CKR.ENCRYPTED_DATA_INVALID)));
    assert.ok(mayBeBadCiphertext(err(CKR.GENERAL_ERROR)));
    assert.ok(!mayBeBadCiphertext(err(CKR.SESSION_HANDLE_INVALID)));
    assert.ok(!isConnectionLost(new Error('no code')));
  });
});

describe('pkcs11 flags and PIN file', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atrest-pkcs11-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('maps flags to commander option keys', () => {
    assert.equal(optionKey('--pkcs11-pin-file <path>'), 'pkcs11PinFile');
    assert.deepEqual(
      pkcs11Flags.map((f) => optionKey(f.flags)),
      ['pkcs11Module', 'pkcs11TokenLabel', 'pkcs11PinFile', 'pkcs11KeyLabel', 'pkcs11Mechanism', 'pkcs11Sessions', 'pkcs11CallMode'],
    );
    for (const f of pkcs11Flags) assert.match(f.env, /^ATREST_PKCS11_[A-Z_]+$/);
  });

  it('reads a 0600 PIN file, dropping one trailing newline', async () => {
    const file = join(dir, 'pin');
    await writeFile(file, 'secret pin\r\n', { mode: 0o600 });
    assert.equal(await readPinFile(file), 'secret pin');
    await writeFile(file, '1234', { mode: 0o600 });
    assert.equal(await readPinFile(file), '1234');
    await chmod(file, 0o400);
    assert.equal(await readPinFile(file), '1234');
  });

  it('refuses loose modes, empty files, several lines, directories and missing files', async () => {
    const file = join(dir, 'pin-loose');
    await writeFile(file, '1234\n');
    for (const mode of [0o644, 0o640, 0o604, 0o620, 0o602]) {
      await chmod(file, mode);
      await assert.rejects(readPinFile(file), isCode('CONFIG', new RegExp(`--pkcs11-pin-file .*mode 0${mode.toString(8)}`)));
    }
    const empty = join(dir, 'pin-empty');
    await writeFile(empty, '\n', { mode: 0o600 });
    await assert.rejects(readPinFile(empty), isCode('CONFIG', /empty/));
    const lines = join(dir, 'pin-lines');
    await writeFile(lines, '1234\n5678\n', { mode: 0o600 });
    await assert.rejects(readPinFile(lines), (err: unknown) => isCode('CONFIG', /single line/)(err) && !(err as Error).message.includes('1234'));
    const sub = join(dir, 'sub');
    await mkdir(sub, { mode: 0o700 });
    await assert.rejects(readPinFile(sub), isCode('CONFIG', /not a regular file/));
    await assert.rejects(readPinFile(join(dir, 'nope')), isCode('CONFIG', /cannot open \(ENOENT\)/));
  });

  it('validates every flag and names it', async () => {
    const pin = join(dir, 'pin-ok');
    await writeFile(pin, '1234\n', { mode: 0o600 });
    const base = { pkcs11Module: '/m.so', pkcs11TokenLabel: 'tok', pkcs11PinFile: pin, pkcs11KeyLabel: 'kek' };
    const config = await loadPkcs11Config(base);
    assert.deepEqual(config, { modulePath: '/m.so', tokenLabel: 'tok', keyLabel: 'kek', pin: '1234', pinFile: pin, mechanism: 'auto', sessions: 4, callMode: 'async' });
    await assert.rejects(loadPkcs11Config({ ...base, pkcs11CallMode: 'threads' }), isCode('CONFIG', /--pkcs11-call-mode/));
    assert.equal((await loadPkcs11Config({ ...base, pkcs11CallMode: 'sync' })).callMode, 'sync');
    await assert.rejects(loadPkcs11Config({ ...base, pkcs11Module: undefined }), isCode('CONFIG', /--pkcs11-module is required/));
    await assert.rejects(loadPkcs11Config({ ...base, pkcs11TokenLabel: '' }), isCode('CONFIG', /--pkcs11-token-label is required/));
    await assert.rejects(loadPkcs11Config({ ...base, pkcs11TokenLabel: 'x'.repeat(33) }), isCode('CONFIG', /--pkcs11-token-label is longer than 32/));
    await assert.rejects(loadPkcs11Config({ ...base, pkcs11KeyLabel: 'a\nb' }), isCode('CONFIG', /--pkcs11-key-label contains control/));
    await assert.rejects(loadPkcs11Config({ ...base, pkcs11Sessions: '0' }), isCode('CONFIG', /--pkcs11-sessions/));
    await assert.rejects(loadPkcs11Config({ ...base, pkcs11Mechanism: 'aes-cbc' }), isCode('CONFIG', /--pkcs11-mechanism/));
    await assert.rejects(loadPkcs11Config({ ...base, pkcs11PinFile: undefined }), isCode('CONFIG', /--pkcs11-pin-file is required/));
    assert.equal((await loadPkcs11Config({ ...base, pkcs11Mechanism: 'aes-kwp', pkcs11Sessions: '2' })).mechanism, 'aes-kwp');
  });
});
