// The local KEK backend on its own: key file creation, modes, parsing, rotation, the ciphertext
// layout (checked byte by byte with an independent AES-GCM implementation), tampering and refresh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, lstat, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gcm } from '@noble/ciphers/aes.js';
import { pino } from 'pino';
import { BackendError, type KekBackend } from '../../src/plugin/backend.js';
import { localBackend } from '../../src/plugin/backends/local.js';
import { makeTempDir } from '../helpers/plugin.js';
import { inProcessLogger } from '../helpers/test-log.js';

const ctx = { log: inProcessLogger('kms-plugin') };

async function withKeyFile(fn: (keyFile: string, dir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await makeTempDir();
  try {
    await fn(join(dir, 'kek.json'), dir);
  } finally {
    await cleanup();
  }
}

async function withOpen(keyFile: string, fn: (kek: KekBackend) => Promise<void>): Promise<void> {
  const kek = await localBackend.open({ keyFile }, ctx);
  try {
    await fn(kek);
  } finally {
    await kek.close();
  }
}

function codeOf(err: unknown): string | undefined {
  return err instanceof BackendError ? err.code : undefined;
}

test('init-key creates a 0600 key file, prints a key_id that is not key material, and refuses to overwrite', async () => {
  await withKeyFile(async (keyFile) => {
    const keyId = await localBackend.initKey({ keyFile }, ctx);
    assert.match(keyId, /^local:v1:[0-9a-f]{16}$/);
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    const doc = JSON.parse(await readFile(keyFile, 'utf8'));
    assert.equal(doc.format, 'atrest-local-kek/v1');
    assert.equal(doc.versions.length, 1);
    const key = Buffer.from(doc.versions[0].key, 'base64');
    assert.equal(key.length, 32);
    assert.ok(!keyId.includes(key.toString('hex').slice(0, 8)));
    const before = await readFile(keyFile);
    await assert.rejects(localBackend.initKey({ keyFile }, ctx), /already exists/);
    assert.deepEqual(await readFile(keyFile), before, 'the existing file is untouched');
  });
});

test('--key-file is required', async () => {
  await assert.rejects(localBackend.open({}, ctx), /--key-file is required/);
  await assert.rejects(localBackend.initKey({ keyFile: '' }, ctx), /--key-file is required/);
});

test('a group/world-accessible key file is refused, naming the file and its mode', async () => {
  await withKeyFile(async (keyFile) => {
    await localBackend.initKey({ keyFile }, ctx);
    await chmod(keyFile, 0o644);
    await assert.rejects(localBackend.open({ keyFile }, ctx), (err: Error) => {
      assert.equal(codeOf(err), 'CONFIG');
      assert.ok(err.message.includes(keyFile), err.message);
      assert.ok(err.message.includes('0644'), err.message);
      return true;
    });
    await assert.rejects(localBackend.rotateKey({ keyFile }, ctx), /0644/);
    await chmod(keyFile, 0o640);
    await assert.rejects(localBackend.open({ keyFile }, ctx), /0640/);
    await chmod(keyFile, 0o400);
    await withOpen(keyFile, async (kek) => assert.match(await kek.currentKeyId(), /^local:v1:/));
  });
});

test('malformed key files are refused with the field named and no key material in the message', async () => {
  await withKeyFile(async (keyFile) => {
    const secret = Buffer.alloc(31, 7).toString('base64');
    const cases: Array<[unknown, RegExp]> = [
      ['not json {', /not valid JSON/],
      [{ format: 'other', versions: [] }, /"format" must be/],
      [{ format: 'atrest-local-kek/v1', versions: [] }, /"versions" must be a non-empty array/],
      [{ format: 'atrest-local-kek/v1', versions: [{ version: 1, id: '0011223344556677', key: secret }] }, /versions\[0\]\.key must be 32 bytes/],
      [{ format: 'atrest-local-kek/v1', versions: [{ version: 0, id: '0011223344556677', key: secret }] }, /versions\[0\]\.version/],
      [{ format: 'atrest-local-kek/v1', versions: [{ version: 1, id: 'xyz', key: secret }] }, /versions\[0\]\.id/],
    ];
    for (const [doc, expected] of cases) {
      await writeFile(keyFile, typeof doc === 'string' ? doc : JSON.stringify(doc), { mode: 0o600 });
      await assert.rejects(localBackend.open({ keyFile }, ctx), (err: Error) => {
        assert.match(err.message, expected);
        assert.ok(!err.message.includes(secret), 'no key material in errors');
        return true;
      });
    }
    const key = Buffer.alloc(32, 9).toString('base64');
    await writeFile(keyFile, JSON.stringify({ format: 'atrest-local-kek/v1', versions: [
      { version: 1, id: '0011223344556677', key }, { version: 1, id: '8899aabbccddeeff', key },
    ] }));
    await assert.rejects(localBackend.open({ keyFile }, ctx), /versions\[1\]\.version 1 appears twice/);
  });
});

test('the ciphertext layout is as documented: 0x01 ‖ u32be version ‖ id ‖ nonce ‖ AES-256-GCM(ct ‖ tag), AAD = header ‖ key_id', async () => {
  await withKeyFile(async (keyFile) => {
    const keyId = await localBackend.initKey({ keyFile }, ctx);
    const doc = JSON.parse(await readFile(keyFile, 'utf8'));
    const key = Buffer.from(doc.versions[0].key, 'base64');
    await withOpen(keyFile, async (kek) => {
      const dek = Buffer.alloc(32, 0x5a);
      const wrapped = await kek.encrypt(dek);
      assert.equal(wrapped.keyId, keyId);
      const ct = wrapped.ciphertext;
      assert.equal(ct.length, 1 + 4 + 8 + 12 + 32 + 16);
      assert.equal(ct[0], 0x01);
      assert.equal(ct.readUInt32BE(1), 1);
      assert.equal(ct.subarray(5, 13).toString('hex'), doc.versions[0].id);
      const aad = Buffer.concat([ct.subarray(0, 13), Buffer.from(keyId)]);
      const opened = gcm(key, ct.subarray(13, 25), aad).decrypt(ct.subarray(25));
      assert.deepEqual(Buffer.from(opened), dek);
      // and the other way: a ciphertext made independently opens in the backend
      const nonce = Buffer.alloc(12, 3);
      const made = Buffer.concat([ct.subarray(0, 13), nonce, gcm(key, nonce, aad).encrypt(Buffer.from('independent'))]);
      assert.equal((await kek.decrypt(made)).toString(), 'independent');
    });
  });
});

test('tampered, truncated, foreign and unknown-version ciphertexts are INVALID_CIPHERTEXT', async () => {
  await withKeyFile(async (keyFile) => {
    await localBackend.initKey({ keyFile }, ctx);
    await withOpen(keyFile, async (kek) => {
      const { ciphertext } = await kek.encrypt(Buffer.alloc(32, 1));
      for (const index of [0, 3, 8, 15, 30, ciphertext.length - 1]) {
        const bad = Buffer.from(ciphertext);
        bad[index] = (bad[index] ?? 0) ^ 0x01;
        await assert.rejects(kek.decrypt(bad), (err) => codeOf(err) === 'INVALID_CIPHERTEXT', `byte ${index}`);
      }
      await assert.rejects(kek.decrypt(ciphertext.subarray(0, 40)), (err) => codeOf(err) === 'INVALID_CIPHERTEXT');
      await assert.rejects(kek.decrypt(Buffer.alloc(0)), (err) => codeOf(err) === 'INVALID_CIPHERTEXT');
      const unknown = Buffer.from(ciphertext);
      unknown.writeUInt32BE(7, 1);
      await assert.rejects(kek.decrypt(unknown), /key version 7 .* does not hold/);
    });
  });
});

test('rotate-key adds a version that becomes current; old ciphertexts still decrypt; refresh notices the rewrite', async () => {
  await withKeyFile(async (keyFile) => {
    const first = await localBackend.initKey({ keyFile }, ctx);
    await withOpen(keyFile, async (kek) => {
      const old = await kek.encrypt(Buffer.from('dek-under-v1'));
      const second = await localBackend.rotateKey({ keyFile }, ctx);
      assert.match(second, /^local:v2:[0-9a-f]{16}$/);
      assert.notEqual(second, first);
      assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
      assert.equal(await kek.currentKeyId(), first, 'not seen before refresh');
      await kek.refresh();
      assert.equal(await kek.currentKeyId(), second);
      const fresh = await kek.encrypt(Buffer.from('dek-under-v2'));
      assert.equal(fresh.keyId, second);
      assert.equal(fresh.ciphertext.readUInt32BE(1), 2);
      assert.equal((await kek.decrypt(old.ciphertext)).toString(), 'dek-under-v1');
      assert.equal((await kek.decrypt(fresh.ciphertext)).toString(), 'dek-under-v2');
    });
    // a plugin that has not refreshed yet still decrypts a ciphertext of a newer version: it looks again
    await withOpen(keyFile, async (stale) => {
      const third = await localBackend.rotateKey({ keyFile }, ctx);
      await withOpen(keyFile, async (current) => {
        const c = await current.encrypt(Buffer.from('v3'));
        assert.equal(c.keyId, third);
        assert.equal((await stale.decrypt(c.ciphertext)).toString(), 'v3');
      });
    });
  });
});

test('a current version without a valid "created" reports no creation time (no NaN) and says so in the log', async () => {
  await withKeyFile(async (keyFile) => {
    await localBackend.initKey({ keyFile }, ctx);
    const file = JSON.parse(await readFile(keyFile, 'utf8')) as { versions: Array<Record<string, unknown>> };
    const v1 = file.versions[0]!;
    assert.equal(Date.parse(String(v1['created'])) > 0, true);
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } });
    const events = () => lines.map((l) => (JSON.parse(l) as { event?: string }).event);
    for (const created of ['not-a-date', undefined]) {
      lines.length = 0;
      if (created === undefined) delete v1['created'];
      else v1['created'] = created;
      await writeFile(keyFile, JSON.stringify(file)); // an existing file keeps its 0600
      const kek = await localBackend.open({ keyFile }, { log });
      try {
        assert.equal(await kek.currentKeyCreatedAt?.(), undefined, `created ${String(created)}`);
        assert.ok(events().includes('key-created-unknown'), lines.join(''));
      } finally {
        await kek.close();
      }
    }
    // A dated version is reported as written, without the warning.
    lines.length = 0;
    v1['created'] = '2026-01-02T03:04:05.000Z';
    await writeFile(keyFile, JSON.stringify(file));
    const kek = await localBackend.open({ keyFile }, { log });
    try {
      assert.equal(await kek.currentKeyCreatedAt?.(), Date.parse('2026-01-02T03:04:05.000Z'));
      assert.ok(!events().includes('key-created-unknown'));
    } finally {
      await kek.close();
    }
  });
});

test('a refresh that finds a broken key file keeps the loaded keys and reports why', async () => {
  await withKeyFile(async (keyFile) => {
    const first = await localBackend.initKey({ keyFile }, ctx);
    await withOpen(keyFile, async (kek) => {
      const c = await kek.encrypt(Buffer.from('x'));
      await chmod(keyFile, 0o644);
      await writeFile(keyFile, '{"broken": true}');
      await assert.rejects(kek.refresh(), /0644|"format"/);
      assert.equal(await kek.currentKeyId(), first);
      assert.equal((await kek.decrypt(c.ciphertext)).toString(), 'x');
    });
  });
});

test('a key file reached through a symbolic link is read, mode-checked on the target, and rotated in place', async () => {
  await withKeyFile(async (keyFile, dir) => {
    await localBackend.initKey({ keyFile }, ctx);
    const link = join(dir, 'current.json');
    await symlink(keyFile, link);
    await withOpen(link, async (kek) => {
      const c = await kek.encrypt(Buffer.from('via link'));
      const rotated = await localBackend.rotateKey({ keyFile: link }, ctx);
      assert.ok((await lstat(link)).isSymbolicLink(), 'the link is kept');
      assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
      await kek.refresh();
      assert.equal(await kek.currentKeyId(), rotated);
      assert.equal((await kek.decrypt(c.ciphertext)).toString(), 'via link');
    });
    await chmod(keyFile, 0o604);
    await assert.rejects(localBackend.open({ keyFile: link }, ctx), /has mode 0604/);
  });
});

test('nonces are fresh across refills of the nonce pool, and a returned ciphertext never changes afterwards', async () => {
  await withKeyFile(async (keyFile) => {
    await localBackend.initKey({ keyFile }, ctx);
    await withOpen(keyFile, async (kek) => {
      const dek = Buffer.alloc(32, 0x11);
      const first = await kek.encrypt(dek);
      const firstCopy = Buffer.from(first.ciphertext);
      const nonces = new Set<string>();
      // 1000 × 12 bytes crosses the 4 KiB pool's refill point twice.
      for (let i = 0; i < 1000; i++) {
        const { ciphertext } = await kek.encrypt(dek);
        nonces.add(ciphertext.subarray(13, 25).toString('hex'));
        assert.notEqual(ciphertext.subarray(13, 25).toString('hex'), '00'.repeat(12));
      }
      assert.equal(nonces.size, 1000);
      assert.deepEqual(first.ciphertext, firstCopy, 'later encryptions must not touch an earlier ciphertext');
      assert.deepEqual(await kek.decrypt(first.ciphertext), dek);
    });
  });
});
