// The backend list `atrest kms-plugin` builds its flags from: each entry's name and flags are those of
// the backend module it loads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backendByName, backends } from '../../src/plugin/backends/index.js';

test('each backend entry loads the module of the same name with the same flags', async () => {
  assert.deepEqual(backends.map((b) => b.name), ['local', 'pkcs11', 'kmip']);
  for (const entry of backends) {
    const module = await entry.load();
    assert.equal(module.name, entry.name);
    assert.deepEqual(module.flags, entry.flags);
    assert.equal(backendByName(entry.name), entry);
  }
  assert.equal(backendByName('nope'), undefined);
});
