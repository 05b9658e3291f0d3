// The pkcs11 KEK backend against a real SoftHSM2 token (temporary token directory per run).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pino from 'pino';
import { BackendError, type BackendOptions, type KekBackend } from '../../src/plugin/backend.js';
import { createPkcs11Backend, pkcs11Backend } from '../../src/plugin/backends/pkcs11.js';
import { CKR, ckrName } from '../../src/plugin/pkcs11/ckr.js';
import { loadPkcs11Config } from '../../src/plugin/pkcs11/config.js';
import { Pkcs11Kek } from '../../src/plugin/pkcs11/kek.js';
import { processPkcs11Loader, type Pkcs11Api, type Pkcs11Library } from '../../src/plugin/pkcs11/library.js';
import { findTokenSlot } from '../../src/plugin/pkcs11/token.js';
import { repoRoot } from '../helpers/cli.js';
import { createSoftHsm, type SoftHsm, type SoftHsmToken } from '../helpers/softhsm.js';
import { inProcessLogger } from '../helpers/test-log.js';

const execFileAsync = promisify(execFile);
const context = { log: inProcessLogger('kms-plugin') };

let hsm: SoftHsm;
let pinToken: SoftHsmToken; // used only by the wrong-PIN test, so no other login hides the error

function opts(keyLabel: string, extra: BackendOptions = {}): BackendOptions {
  return {
    pkcs11Module: hsm.modulePath,
    pkcs11TokenLabel: hsm.token.label,
    pkcs11PinFile: hsm.token.pinFile,
    pkcs11KeyLabel: keyLabel,
    ...extra,
  };
}

async function rejectsWith(promise: Promise<unknown>, code: string, pattern: RegExp): Promise<BackendError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof BackendError, `expected a BackendError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return err;
  }
  assert.fail(`expected a BackendError ${code}`);
}

/** Runs fn with a logged-in session of our own on the test token (shares the loaded module). */
async function withTestSession<T>(fn: (lib: Pkcs11Library, session: Buffer) => T): Promise<T> {
  const lib = await processPkcs11Loader.acquire(hsm.modulePath);
  const session = lib.api.C_OpenSession(findTokenSlot(lib, hsm.token.label), lib.k.CKF_SERIAL_SESSION | lib.k.CKF_RW_SESSION);
  try {
    try {
      lib.api.C_Login(session, lib.k.CKU_USER, hsm.token.pin);
    } catch (err) {
      if ((err as { code?: number }).code !== CKR.USER_ALREADY_LOGGED_IN) throw err;
    }
    return fn(lib, session);
  } finally {
    try {
      lib.api.C_CloseSession(session);
    } catch {
      // the reconnect test closes every session of the token itself
    }
    lib.release();
  }
}

function findKeys(lib: Pkcs11Library, session: Buffer, label: string): Buffer[] {
  lib.api.C_FindObjectsInit(session, [{ type: lib.k.CKA_LABEL, value: label }]);
  try {
    return lib.api.C_FindObjects(session, 100);
  } finally {
    lib.api.C_FindObjectsFinal(session);
  }
}

before(async () => {
  // All tokens first: SoftHSM only scans its token directory at C_Initialize.
  hsm = await createSoftHsm({ tokenLabel: 'atrest-kek' });
  pinToken = await hsm.addToken('atrest-pin-check', 'right-pin-4321');
});

after(async () => {
  await hsm?.cleanup();
});

describe('pkcs11 backend flags', () => {
  it('declares the flags with ATREST_PKCS11_* environment variables', () => {
    const byFlag = new Map(pkcs11Backend.flags.map((f) => [f.flags.split(' ')[0], f.env]));
    assert.equal(pkcs11Backend.name, 'pkcs11');
    assert.equal(byFlag.get('--pkcs11-module'), 'ATREST_PKCS11_MODULE');
    assert.equal(byFlag.get('--pkcs11-token-label'), 'ATREST_PKCS11_TOKEN_LABEL');
    assert.equal(byFlag.get('--pkcs11-pin-file'), 'ATREST_PKCS11_PIN_FILE');
    assert.equal(byFlag.get('--pkcs11-key-label'), 'ATREST_PKCS11_KEY_LABEL');
  });
});

describe('pkcs11 backend with SoftHSM', () => {
  it('init-key creates version 1 and the backend round-trips DEKs and seeds', async () => {
    const keyId = await pkcs11Backend.initKey(opts('kek-main'), context);
    assert.match(keyId, /^pkcs11:atrest-kek:kek-main:00000001[0-9a-f]{16}$/);
    const kek = await pkcs11Backend.open(opts('kek-main'), context);
    try {
      assert.equal(kek.kind, 'pkcs11');
      assert.equal(await kek.currentKeyId(), keyId);
      for (const size of [1, 16, 32, 64, 981]) {
        const plaintext = Buffer.from(Buffer.alloc(size).map((_b, i) => (i * 7 + size) & 0xff));
        const wrapped = await kek.encrypt(plaintext);
        assert.equal(wrapped.keyId, keyId);
        assert.ok(wrapped.ciphertext.length <= 1024, `ciphertext of ${wrapped.ciphertext.length} bytes`);
        assert.equal(wrapped.ciphertext[1], 1, 'AES-GCM mechanism byte');
        assert.ok(!wrapped.ciphertext.includes(plaintext) || size < 4, 'plaintext must not appear in the ciphertext');
        assert.deepEqual(await kek.decrypt(wrapped.ciphertext), Buffer.from(plaintext));
      }
      // Fresh IV every time.
      const a = await kek.encrypt(Buffer.alloc(32, 1));
      const b = await kek.encrypt(Buffer.alloc(32, 1));
      assert.notDeepEqual(a.ciphertext, b.ciphertext);
      await rejectsWith(kek.encrypt(Buffer.alloc(982)), 'INTERNAL', /982 bytes/);
      await rejectsWith(kek.encrypt(Buffer.alloc(0)), 'INTERNAL', /empty plaintext/);
    } finally {
      await kek.close();
    }
  });

  it('init-key refuses when the key exists; rotate-key refuses when it does not', async () => {
    await rejectsWith(pkcs11Backend.initKey(opts('kek-main'), context), 'CONFIG', /exists already.*rotate-key/);
    await rejectsWith(pkcs11Backend.rotateKey(opts('kek-none'), context), 'KEY_NOT_FOUND', /"kek-none".*init-key/);
  });

  it('keeps the KEK inside the token: sensitive, never extractable, CKA_VALUE unreadable', async () => {
    await withTestSession((lib, session) => {
      const [handle, extra] = findKeys(lib, session, 'kek-main');
      assert.ok(handle, 'the key object exists');
      assert.equal(extra, undefined, 'one version so far');
      const { k, api } = lib;
      const attrs = api.C_GetAttributeValue(session, handle, [
        { type: k.CKA_TOKEN },
        { type: k.CKA_SENSITIVE },
        { type: k.CKA_EXTRACTABLE },
        { type: k.CKA_ALWAYS_SENSITIVE },
        { type: k.CKA_NEVER_EXTRACTABLE },
        { type: k.CKA_ENCRYPT },
        { type: k.CKA_DECRYPT },
        { type: k.CKA_WRAP },
      ]);
      assert.deepEqual(
        attrs.map((a) => a.value[0]),
        [1, 1, 0, 1, 1, 1, 1, 0],
      );
      assert.throws(() => api.C_GetAttributeValue(session, handle, [{ type: k.CKA_VALUE }]), (err: { code?: number }) => err.code === CKR.ATTRIBUTE_SENSITIVE);
      assert.throws(() => api.C_SetAttributeValue(session, handle, [{ type: k.CKA_EXTRACTABLE, value: true }]));
    });
  });

  it('an independent PKCS#11 client (OpenSC pkcs11-tool) sees a non-extractable key and cannot read it', async () => {
    const base = ['--module', hsm.modulePath, '--token-label', hsm.token.label, '--login', '--pin', hsm.token.pin];
    const env = { ...process.env, ...hsm.env };
    const listing = await execFileAsync('pkcs11-tool', [...base, '--list-objects', '--type', 'secrkey'], { env });
    assert.match(listing.stdout, /Secret Key Object; AES length 32\s+label:\s+kek-main\s+ID:\s+00000001[0-9a-f]{16}/);
    assert.match(listing.stdout, /Access:\s+sensitive, always sensitive, never extractable, local/);
    await assert.rejects(
      execFileAsync('pkcs11-tool', [...base, '--read-object', '--type', 'secrkey', '--label', 'kek-main'], { env }),
      (err: { stderr?: string }) => /CKR_ATTRIBUTE_SENSITIVE/.test(err.stderr ?? ''),
    );
  });

  it('rejects tampered, truncated and re-labelled ciphertexts', async () => {
    const kek = await pkcs11Backend.open(opts('kek-main'), context);
    try {
      const { ciphertext } = await kek.encrypt(Buffer.alloc(32, 9));
      for (const index of [3 + 12, ciphertext.length - 20, ciphertext.length - 1]) {
        const bad = Buffer.from(ciphertext);
        bad[index] = (bad[index] ?? 0) ^ 0x01;
        await rejectsWith(kek.decrypt(bad), 'INVALID_CIPHERTEXT', /does not authenticate/);
      }
      await rejectsWith(kek.decrypt(ciphertext.subarray(0, 20)), 'INVALID_CIPHERTEXT', /malformed/);
      await rejectsWith(kek.decrypt(Buffer.from('not a ciphertext')), 'INVALID_CIPHERTEXT', /malformed/);
      const unknownVersion = Buffer.from(ciphertext);
      unknownVersion[10] = (unknownVersion[10] ?? 0) ^ 0xff;
      await rejectsWith(kek.decrypt(unknownVersion), 'KEY_NOT_FOUND', /key version/);
      // The backend still works after all those failures.
      assert.deepEqual(await kek.decrypt(ciphertext), Buffer.alloc(32, 9));
    } finally {
      await kek.close();
    }
  });

  it('rotate-key in another process: new key_id, refresh() sees it, old ciphertexts still decrypt', async () => {
    await pkcs11Backend.initKey(opts('kek-rotate'), context);
    const kek = await pkcs11Backend.open(opts('kek-rotate'), context);
    try {
      const firstKeyId = await kek.currentKeyId();
      const old = await kek.encrypt(Buffer.alloc(32, 3));
      const script = [
        `import { pkcs11Backend } from ${JSON.stringify(join(repoRoot, 'src/plugin/backends/pkcs11.ts'))};`,
        `import { silentLogger } from ${JSON.stringify(join(repoRoot, 'src/log.ts'))};`,
        `process.stdout.write(await pkcs11Backend.rotateKey(JSON.parse(process.env.OPTS), { log: silentLogger() }));`,
      ].join('\n');
      const child = await execFileAsync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: repoRoot,
        env: { ...process.env, ...hsm.env, OPTS: JSON.stringify(opts('kek-rotate')) },
      });
      const secondKeyId = child.stdout.trim();
      assert.match(secondKeyId, /^pkcs11:atrest-kek:kek-rotate:00000002[0-9a-f]{16}$/);

      assert.equal(await kek.currentKeyId(), firstKeyId, 'no change before refresh');
      await kek.refresh();
      assert.equal(await kek.currentKeyId(), secondKeyId);
      const fresh = await kek.encrypt(Buffer.alloc(32, 4));
      assert.equal(fresh.keyId, secondKeyId);
      assert.deepEqual(await kek.decrypt(old.ciphertext), Buffer.alloc(32, 3));
      assert.deepEqual(await kek.decrypt(fresh.ciphertext), Buffer.alloc(32, 4));

      // Swapping the header's version for the other one is caught by the GCM AAD.
      const swapped = Buffer.concat([fresh.ciphertext.subarray(0, 3), old.ciphertext.subarray(3, 15), fresh.ciphertext.subarray(15)]);
      await rejectsWith(kek.decrypt(swapped), 'INVALID_CIPHERTEXT', /does not authenticate/);

      // In-process rotation too, and a newly opened backend starts at the newest version.
      const thirdKeyId = await pkcs11Backend.rotateKey(opts('kek-rotate'), context);
      assert.match(thirdKeyId, /:00000003[0-9a-f]{16}$/);
      const reopened = await pkcs11Backend.open(opts('kek-rotate'), context);
      try {
        assert.equal(await reopened.currentKeyId(), thirdKeyId);
        assert.deepEqual(await reopened.decrypt(old.ciphertext), Buffer.alloc(32, 3));
        // A ciphertext of a version the first backend has not loaded yet: it reloads on demand.
        const newest = await reopened.encrypt(Buffer.alloc(32, 5));
        assert.deepEqual(await kek.decrypt(newest.ciphertext), Buffer.alloc(32, 5));
      } finally {
        await reopened.close();
      }
    } finally {
      await kek.close();
    }
  });

  for (const callMode of ['async', 'sync']) {
    it(`runs concurrent calls over its session pool (--pkcs11-call-mode ${callMode})`, async () => {
      const kek = await pkcs11Backend.open(opts('kek-main', { pkcs11Sessions: '3', pkcs11CallMode: callMode }), context);
      const other = await pkcs11Backend.open(opts('kek-main', { pkcs11CallMode: callMode === 'sync' ? 'async' : 'sync' }), context);
      try {
        const plaintexts = Array.from({ length: 48 }, (_v, i) => Buffer.alloc(32, i));
        const wrapped = await Promise.all(plaintexts.map((p) => kek.encrypt(p)));
        const unwrapped = await Promise.all(wrapped.map((w) => kek.decrypt(w.ciphertext)));
        assert.deepEqual(unwrapped, plaintexts);
        // Both call modes produce the same format.
        assert.deepEqual(await other.decrypt(wrapped[5]?.ciphertext ?? Buffer.alloc(0)), plaintexts[5]);
        const bad = Buffer.from(wrapped[0]?.ciphertext ?? Buffer.alloc(0));
        bad[20] = (bad[20] ?? 0) ^ 0x10;
        await rejectsWith(kek.decrypt(bad), 'INVALID_CIPHERTEXT', /does not authenticate/);
      } finally {
        await kek.close();
        await other.close();
      }
    });
  }

  it('falls back to CKM_AES_KEY_WRAP_PAD (forced) and an auto backend still unwraps those', async () => {
    const kwp = opts('kek-kwp', { pkcs11Mechanism: 'aes-kwp' });
    await pkcs11Backend.initKey(kwp, context);
    const kek = await pkcs11Backend.open(kwp, context);
    const samples: Array<{ plain: Buffer; ciphertext: Buffer }> = [];
    try {
      for (const size of [1, 15, 32, 33, 64, 986]) {
        const plain = Buffer.from(Buffer.alloc(size).map((_b, i) => (i * 13 + 1) & 0xff));
        const { ciphertext } = await kek.encrypt(plain);
        assert.equal(ciphertext[1], 2, 'key-wrap mechanism byte');
        assert.ok(ciphertext.length <= 1024);
        assert.deepEqual(await kek.decrypt(ciphertext), plain);
        samples.push({ plain, ciphertext });
      }
      await rejectsWith(kek.encrypt(Buffer.alloc(987)), 'INTERNAL', /987 bytes/);
      const sample = samples[3];
      assert.ok(sample);
      const bad = Buffer.from(sample.ciphertext);
      bad[bad.length - 3] = (bad[bad.length - 3] ?? 0) ^ 0x40;
      await rejectsWith(kek.decrypt(bad), 'INVALID_CIPHERTEXT', /does not authenticate/);
    } finally {
      await kek.close();
    }
    const syncKwp = await pkcs11Backend.open({ ...kwp, pkcs11CallMode: 'sync' }, context);
    try {
      for (const s of samples) assert.deepEqual(await syncKwp.decrypt(s.ciphertext), s.plain);
      const { ciphertext } = await syncKwp.encrypt(Buffer.alloc(32, 0x5a));
      assert.equal(ciphertext[1], 2);
      samples.push({ plain: Buffer.alloc(32, 0x5a), ciphertext });
    } finally {
      await syncKwp.close();
    }
    const auto = await pkcs11Backend.open(opts('kek-kwp'), context);
    try {
      for (const s of samples) assert.deepEqual(await auto.decrypt(s.ciphertext), s.plain);
      assert.equal((await auto.encrypt(Buffer.alloc(32))).ciphertext[1], 1, 'new ciphertexts use AES-GCM');
    } finally {
      await auto.close();
    }
  });

  it('reconnects by itself when its sessions are closed under it', async () => {
    const kek = await pkcs11Backend.open(opts('kek-main'), context);
    try {
      const before = await kek.encrypt(Buffer.alloc(32, 6));
      await withTestSession((lib) => lib.api.C_CloseAllSessions(findTokenSlot(lib, hsm.token.label)));
      // Every session (and the login) is gone; the next calls reconnect and log in again.
      assert.deepEqual(await kek.decrypt(before.ciphertext), Buffer.alloc(32, 6));
      const after = await kek.encrypt(Buffer.alloc(32, 7));
      assert.deepEqual(await kek.decrypt(after.ciphertext), Buffer.alloc(32, 7));
    } finally {
      await kek.close();
    }
  });

  it('reports UNAVAILABLE while the token is unreachable and recovers afterwards (fault injection)', async () => {
    const config = await loadPkcs11Config(opts('kek-main'));
    const real = await processPkcs11Loader.acquire(hsm.modulePath);
    let down = false;
    const deviceRemoved = (method: string) => Object.assign(new Error('CKR_DEVICE_REMOVED'), { code: CKR.DEVICE_REMOVED, method });
    const api = new Proxy(real.api, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          if (down && String(prop).startsWith('C_') && prop !== 'C_CloseSession') throw deviceRemoved(String(prop));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    }) as Pkcs11Api;
    const kek = await Pkcs11Kek.open({ config, library: { ...real, api }, log: inProcessLogger('kms-plugin') });
    try {
      const ok = await kek.encrypt(Buffer.alloc(32, 8));
      down = true;
      await rejectsWith(kek.encrypt(Buffer.alloc(32)), 'UNAVAILABLE', /not reachable|cannot list slots/);
      await rejectsWith(kek.decrypt(ok.ciphertext), 'UNAVAILABLE', /CKR_DEVICE_REMOVED|cannot list slots/);
      down = false;
      // Reconnects are rate-limited; poll (bounded) until the backend is back.
      let recovered: Buffer | undefined;
      for (let i = 0; i < 100 && !recovered; i++) {
        try {
          recovered = await kek.decrypt(ok.ciphertext);
        } catch (err) {
          assert.equal((err as BackendError).code, 'UNAVAILABLE');
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      assert.deepEqual(recovered, Buffer.alloc(32, 8));
    } finally {
      await kek.close(); // releases the reference acquired above
    }
  });

  it('fails clearly on a wrong PIN without revealing it', async () => {
    const wrongPinFile = join(hsm.dir, 'wrong-pin');
    await writeFile(wrongPinFile, 'not-the-pin-9876\n', { mode: 0o600 });
    const err = await rejectsWith(
      pkcs11Backend.open(opts('kek-main', { pkcs11TokenLabel: pinToken.label, pkcs11PinFile: wrongPinFile }), context),
      'CONFIG',
      /login to token "atrest-pin-check" failed: the PIN in --pkcs11-pin-file is incorrect/,
    );
    assert.ok(!err.message.includes('not-the-pin-9876'));
    // The right PIN gets past the login (and then finds no key there).
    await rejectsWith(pkcs11Backend.open(opts('kek-main', { pkcs11TokenLabel: pinToken.label, pkcs11PinFile: pinToken.pinFile }), context), 'KEY_NOT_FOUND', /kek-main/);
  });

  it('refuses a group- or world-readable PIN file', async () => {
    const loose = join(hsm.dir, 'loose-pin');
    await writeFile(loose, `${hsm.token.pin}\n`);
    await chmod(loose, 0o644);
    const err = await rejectsWith(pkcs11Backend.open(opts('kek-main', { pkcs11PinFile: loose }), context), 'CONFIG', /--pkcs11-pin-file .*mode 0644/);
    assert.ok(!err.message.includes(hsm.token.pin));
    await chmod(loose, 0o640);
    await rejectsWith(pkcs11Backend.initKey(opts('kek-other', { pkcs11PinFile: loose }), context), 'CONFIG', /mode 0640/);
  });

  it('names the missing token label, key label, module and flags', async () => {
    await rejectsWith(pkcs11Backend.open(opts('kek-main', { pkcs11TokenLabel: 'no-such-token' }), context), 'CONFIG', /no token labelled "no-such-token".*"atrest-kek"/);
    await rejectsWith(pkcs11Backend.open(opts('kek-absent'), context), 'KEY_NOT_FOUND', /no key labelled "kek-absent" in token "atrest-kek".*init-key/);
    await rejectsWith(pkcs11Backend.open(opts('kek-main', { pkcs11Module: join(hsm.dir, 'missing.so') }), context), 'CONFIG', /--pkcs11-module .*missing\.so/);
    await rejectsWith(pkcs11Backend.open(opts('kek-main', { pkcs11KeyLabel: undefined }), context), 'CONFIG', /--pkcs11-key-label is required/);
    await rejectsWith(pkcs11Backend.open(opts('kek-main', { pkcs11Mechanism: 'des' }), context), 'CONFIG', /--pkcs11-mechanism/);
  });

  it('reports CKA_START_DATE as the creation time; none without one; rotate-key sets it', async () => {
    const utcDay = (t: number): number => Date.UTC(new Date(t).getUTCFullYear(), new Date(t).getUTCMonth(), new Date(t).getUTCDate());
    const makeVersion = (id: string, extra: (k: Pkcs11Library['k']) => Array<{ type: number; value: boolean | Buffer }>): Promise<void> =>
      withTestSession((lib, session) => {
        const { k } = lib;
        lib.api.C_GenerateKey(session, { mechanism: k.CKM_AES_KEY_GEN }, [
          { type: k.CKA_CLASS, value: k.CKO_SECRET_KEY },
          { type: k.CKA_KEY_TYPE, value: k.CKK_AES },
          { type: k.CKA_VALUE_LEN, value: 32 },
          { type: k.CKA_LABEL, value: 'kek-dated' },
          { type: k.CKA_ID, value: Buffer.from(id, 'hex') },
          { type: k.CKA_TOKEN, value: true },
          { type: k.CKA_SENSITIVE, value: true },
          { type: k.CKA_EXTRACTABLE, value: false },
          { type: k.CKA_ENCRYPT, value: true },
          { type: k.CKA_DECRYPT, value: true },
          ...extra(k),
        ]);
      });
    /** CKA_START_DATE of every version as the token returns it: "YYYYMMDD", "" (empty) or the CKR name. */
    const rawDates = (): Promise<string[]> =>
      withTestSession((lib, session) =>
        findKeys(lib, session, 'kek-dated')
          .map((h) => {
            try {
              return lib.api.C_GetAttributeValue(session, h, [{ type: lib.k.CKA_START_DATE }])[0]?.value?.toString('ascii') ?? '';
            } catch (err) {
              return err instanceof TypeError ? '' : ckrName((err as { code: number }).code);
            }
          })
          .sort(),
      );

    // v1 as atrest made it before it set CKA_START_DATE.
    await makeVersion('000000010102030405060708', (k) => [{ type: k.CKA_PRIVATE, value: true }]);
    const kek = await pkcs11Backend.open(opts('kek-dated'), context);
    try {
      assert.ok(kek.currentKeyCreatedAt, 'the pkcs11 backend reports creation times');
      assert.equal(await kek.currentKeyCreatedAt(), undefined, 'no CKA_START_DATE: no creation time');

      // v2 with a start date the token returns (SoftHSM returns dates of public objects only).
      await makeVersion('000000020102030405060708', (k) => [{ type: k.CKA_PRIVATE, value: false }, { type: k.CKA_START_DATE, value: Buffer.from('20240115') }]);
      await kek.refresh();
      assert.match(await kek.currentKeyId(), /:000000020102030405060708$/);
      assert.equal(await kek.currentKeyCreatedAt(), Date.UTC(2024, 0, 15));

      // v3 by rotate-key: private, with today's CKA_START_DATE. SoftHSM 2.6 cannot return a date
      // of a private object (CKR_GENERAL_ERROR, softhsm/SoftHSMv2#655): then the backend reports
      // none and keeps working; a token that returns it reports the UTC day.
      const before = Date.now();
      const keyId = await pkcs11Backend.rotateKey(opts('kek-dated'), context);
      const after = Date.now();
      await kek.refresh();
      assert.equal(await kek.currentKeyId(), keyId);
      const days = [utcDay(before), utcDay(after)];
      const ckDates = days.map((d) => new Date(d).toISOString().slice(0, 10).replaceAll('-', ''));
      const raw = await rawDates();
      assert.equal(raw.length, 3);
      assert.ok(raw.includes(''), 'v1 has no start date');
      assert.ok(raw.includes('20240115'));
      const v3 = raw.find((r) => r !== '' && r !== '20240115');
      assert.ok(v3 === 'CKR_GENERAL_ERROR' || ckDates.includes(v3 ?? ''), `rotate-key set CKA_START_DATE (token returns ${String(v3)}, not empty)`);
      const created = await kek.currentKeyCreatedAt();
      if (v3 === 'CKR_GENERAL_ERROR') assert.equal(created, undefined);
      else assert.ok(created !== undefined && days.includes(created), `creation time ${String(created)} is the UTC day of the rotation`);
      const wrapped = await kek.encrypt(Buffer.alloc(32, 9));
      assert.equal(wrapped.keyId, keyId);
      assert.deepEqual(await kek.decrypt(wrapped.ciphertext), Buffer.alloc(32, 9));
    } finally {
      await kek.close();
    }
  });

  it('refuses to use an extractable key object under its label', async () => {
    await withTestSession((lib, session) => {
      const { k } = lib;
      lib.api.C_GenerateKey(session, { mechanism: k.CKM_AES_KEY_GEN }, [
        { type: k.CKA_CLASS, value: k.CKO_SECRET_KEY },
        { type: k.CKA_KEY_TYPE, value: k.CKK_AES },
        { type: k.CKA_VALUE_LEN, value: 32 },
        { type: k.CKA_LABEL, value: 'kek-leaky' },
        { type: k.CKA_ID, value: Buffer.from('000000010102030405060708', 'hex') },
        { type: k.CKA_TOKEN, value: true },
        { type: k.CKA_PRIVATE, value: true },
        { type: k.CKA_SENSITIVE, value: false },
        { type: k.CKA_EXTRACTABLE, value: true },
        { type: k.CKA_ENCRYPT, value: true },
        { type: k.CKA_DECRYPT, value: true },
      ]);
    });
    await rejectsWith(pkcs11Backend.open(opts('kek-leaky'), context), 'CONFIG', /extractable or not sensitive/);
    await rejectsWith(pkcs11Backend.rotateKey(opts('kek-leaky'), context), 'CONFIG', /extractable or not sensitive/);
  });

  it('logs open, rotation and reconnects as JSON lines without the PIN or any plaintext', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const secret = Buffer.from('5ecre7-dek-5ecre7-dek-5ecre7-dek');
    await pkcs11Backend.initKey(opts('kek-logged'), { log });
    const kek = await pkcs11Backend.open(opts('kek-logged'), { log });
    try {
      const wrapped = await kek.encrypt(secret);
      await pkcs11Backend.rotateKey(opts('kek-logged'), { log });
      await kek.refresh();
      await withTestSession((lib) => lib.api.C_CloseAllSessions(findTokenSlot(lib, hsm.token.label)));
      assert.deepEqual(await kek.decrypt(wrapped.ciphertext), secret);
    } finally {
      await kek.close();
    }
    const messages = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    for (const expected of ['pkcs11 key created', 'pkcs11 backend opened', 'pkcs11 key rotated', 'pkcs11 session lost; reconnecting']) {
      assert.ok(messages.includes(expected), `missing log line ${expected}: ${messages.join(' | ')}`);
    }
    const all = lines.join('\n');
    for (const forbidden of [hsm.token.pin, secret.toString('utf8'), secret.toString('hex'), secret.toString('base64')]) {
      assert.ok(!all.includes(forbidden), 'a secret appeared in the logs');
    }
  });

  it('close() lets leased calls finish, fails queued ones with UNAVAILABLE, and never crashes', async () => {
    const kek = await pkcs11Backend.open(opts('kek-main', { pkcs11Sessions: '2' }), context);
    const calls = Array.from({ length: 20 }, (_v, i) =>
      kek.encrypt(Buffer.alloc(32, i)).then(
        () => 'ok',
        (err: unknown) => (err instanceof BackendError ? err.code : String(err)),
      ),
    );
    await kek.close();
    const results = await Promise.all(calls);
    assert.ok(results.includes('ok'), results.join(','));
    assert.deepEqual(results.filter((r) => r !== 'ok' && r !== 'UNAVAILABLE'), []);
    await rejectsWith(kek.decrypt(Buffer.alloc(40)), 'INVALID_CIPHERTEXT', /malformed/);
    await rejectsWith(kek.refresh(), 'UNAVAILABLE', /closed/);
  });

  it('shares one loaded module between backends and unloads it with the last one', async () => {
    const backend = createPkcs11Backend();
    const kekA: KekBackend = await backend.open(opts('kek-main'), context);
    const kekB: KekBackend = await backend.open(opts('kek-main'), context);
    const wrapped = await kekA.encrypt(Buffer.alloc(32, 2));
    await kekA.close();
    assert.deepEqual(await kekB.decrypt(wrapped.ciphertext), Buffer.alloc(32, 2));
    await kekB.close();
    await rejectsWith(kekB.encrypt(Buffer.alloc(32)), 'UNAVAILABLE', /closed/);
    // Loading again after the module was finalised works.
    const kekC = await backend.open(opts('kek-main'), context);
    assert.deepEqual(await kekC.decrypt(wrapped.ciphertext), Buffer.alloc(32, 2));
    await kekC.close();
  });
});
