// A JSON patch's copies are bounded by the server's --max-request-body-bytes (kube's rule), not by
// the default: the handlers are given the limit.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ApiError } from '../../src/api/errors.js';
import { ObjectRepository } from '../../src/api/object-repository.js';
import { ResourceHandlers } from '../../src/api/resource-handlers.js';
import { configmaps } from '../../src/api/resource-types.js';
import { EncryptedStore } from '../../src/storage/encrypted-store.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import { IdentityTransformer } from '../../src/transform/identity.js';
import { inProcessLogger } from '../helpers/test-log.js';

test('json-patch copy limit follows maxBodyBytes: 2 KB of copies pass the default and are refused at a 1,000-byte limit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-patch-limits-'));
  const store = openSqliteStore(join(dir, 'store.db'));
  try {
    const cm = { kind: 'ConfigMap', apiVersion: 'v1', metadata: { name: 'cm', namespace: 'ns' }, data: { a: 'x'.repeat(500) } };
    await store.create('/registry/configmaps/ns/cm', Buffer.from(JSON.stringify(cm)));
    const identity = new IdentityTransformer();
    const repo = new ObjectRepository(new EncryptedStore(store, () => identity), '/registry');
    // Four copies of a 500-byte value: ~2 KB added.
    const body = Buffer.from(JSON.stringify(['b', 'c', 'd', 'e'].map((k) => ({ op: 'copy', from: '/data/a', path: `/data/${k}` }))));
    const req = () => ({ rt: configmaps, namespace: 'ns', name: 'cm', query: new URLSearchParams(), body, contentType: 'application/json-patch+json', wantTable: false, warnings: [], fieldManager: 't' });

    const small = new ResourceHandlers({ repo, log: inProcessLogger('api-server'), maxBodyBytes: 1000 });
    await assert.rejects(small.patch(req()), (err) => err instanceof ApiError && err.httpCode === 422 && /exceeds the limit 1000\b/.test(err.message));
    assert.equal(JSON.parse((await store.get('/registry/configmaps/ns/cm'))!.value.toString()).data.b, undefined, 'nothing written');

    const byDefault = new ResourceHandlers({ repo, log: inProcessLogger('api-server') });
    const reply = await byDefault.patch(req());
    assert.equal(reply.code, 200);
    assert.equal((reply.body as { data: Record<string, string> }).data['e'], 'x'.repeat(500));
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
