// EncryptedStore with the engine's real transformers, wired the way the API server wires them
// (resource from the storage key, prefix chain of the EncryptionConfiguration): aesgcm at rest,
// the storage key as authenticated data, identity for unlisted resources, staleness after rotation.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { EncryptionConfiguration } from '../../src/config/types.js';
import { EncryptedStore } from '../../src/storage/encrypted-store.js';
import { StoredValueTransformError } from '../../src/storage/errors.js';
import { parseStorageKey } from '../../src/storage/keys.js';
import { openSqliteStore, STORE_FILE_NAME } from '../../src/storage/sqlite.js';
import type { Store } from '../../src/storage/types.js';
import { buildTransformers } from '../../src/transform/build.js';

const key1 = randomBytes(32).toString('base64');
const key2 = randomBytes(32).toString('base64');

function config(keys: Array<{ name: string; secret: string }>): EncryptionConfiguration {
  return {
    apiVersion: 'apiserver.config.k8s.io/v1',
    kind: 'EncryptionConfiguration',
    resources: [{ resources: ['secrets'], providers: [{ aesgcm: { keys } }, { identity: {} }] }],
  };
}

function encryptedStore(raw: Store, cfg: EncryptionConfiguration): EncryptedStore {
  const set = buildTransformers(cfg);
  return new EncryptedStore(raw, (key) => set.forResource(parseStorageKey('/registry', key).groupResource));
}

describe('EncryptedStore with the engine (aesgcm, identity)', () => {
  let dir: string;
  let raw: Store;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'atrest-enc-engine-'));
    raw = openSqliteStore(join(dir, STORE_FILE_NAME), { compactIntervalMs: 0 });
  });
  after(async () => {
    await raw.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('secrets are aesgcm at rest and bound to their key; configmaps stay plaintext', async () => {
    const enc = encryptedStore(raw, config([{ name: 'key1', secret: key1 }]));
    const secret = Buffer.from('{"kind":"Secret","data":{"k":"dG9wLXNlY3JldA=="}}');
    await enc.create('/registry/secrets/default/s1', secret);
    const stored = (await raw.get('/registry/secrets/default/s1'))?.value;
    assert.ok(stored);
    assert.ok(stored.subarray(0, 23).equals(Buffer.from('k8s:enc:aesgcm:v1:key1:')));
    assert.equal(stored.includes(Buffer.from('dG9wLXNlY3JldA')), false);
    const read = await enc.get('/registry/secrets/default/s1');
    assert.deepEqual(read?.plaintext, secret);
    assert.equal(read?.stale, false);

    // The same bytes under another secret's key fail, and the error names that key.
    await raw.create('/registry/secrets/default/s2', stored);
    await assert.rejects(enc.get('/registry/secrets/default/s2'), (err: unknown) => {
      assert.ok(err instanceof StoredValueTransformError, String(err));
      assert.equal(err.key, '/registry/secrets/default/s2');
      assert.match(err.message, /\/registry\/secrets\/default\/s2/);
      return true;
    });

    await enc.create('/registry/configmaps/default/c1', Buffer.from('{"kind":"ConfigMap"}'));
    assert.deepEqual((await raw.get('/registry/configmaps/default/c1'))?.value, Buffer.from('{"kind":"ConfigMap"}'));
  });

  it('after a key rotation old values read as stale and an update rewrites them with the new key', async () => {
    const before = encryptedStore(raw, config([{ name: 'key1', secret: key1 }]));
    const rev = await before.create('/registry/secrets/rot/s', Buffer.from('{"v":1}'));
    const after = encryptedStore(raw, config([{ name: 'key2', secret: key2 }, { name: 'key1', secret: key1 }]));
    const read = await after.get('/registry/secrets/rot/s');
    assert.equal(read?.stale, true);
    await after.update('/registry/secrets/rot/s', read.plaintext, rev);
    assert.ok((await raw.get('/registry/secrets/rot/s'))?.value.subarray(0, 23).equals(Buffer.from('k8s:enc:aesgcm:v1:key2:')));
    assert.equal((await after.get('/registry/secrets/rot/s'))?.stale, false);
  });
});
