// The last resort of an unpaginated list past its buffer: the range was scanned clean, but the
// transformers changed before it was streamed (a reload that dropped a key, a KMS outage). The body
// must then fail (server.ts destroys the connection) rather than end as a complete-looking short list.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ObjectRepository } from '../../src/api/object-repository.js';
import { StreamedBody } from '../../src/api/list-handler.js';
import { ResourceHandlers } from '../../src/api/resource-handlers.js';
import { configmaps } from '../../src/api/resource-types.js';
import { EncryptedStore } from '../../src/storage/encrypted-store.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import { IdentityTransformer } from '../../src/transform/identity.js';
import type { Transformer } from '../../src/transform/types.js';
import { inProcessLogger } from '../helpers/test-log.js';

test('a value that stops decrypting between the scan and the stream fails the body, never a short list', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-streamed-list-'));
  const store = openSqliteStore(join(dir, 'store.db'));
  try {
    for (let i = 0; i < 1200; i++) {
      const name = `cm-${String(i).padStart(4, '0')}`;
      await store.create(`/registry/configmaps/ns/${name}`, Buffer.from(JSON.stringify({ kind: 'ConfigMap', apiVersion: 'v1', metadata: { name, namespace: 'ns' } })));
    }
    const identity = new IdentityTransformer();
    let keyLost = false;
    const flaky: Transformer = {
      toStorage: (p, k) => identity.toStorage(p, k),
      fromStorage: (s, k) => (keyLost && Buffer.from(k).toString().endsWith('cm-1100') ? Promise.reject(new Error('the key is gone')) : identity.fromStorage(s, k)),
    };
    const repo = new ObjectRepository(new EncryptedStore(store, () => flaky), '/registry');
    const handlers = new ResourceHandlers({ repo, log: inProcessLogger('api-server'), listBufferChars: 4096 });
    const req = { rt: configmaps, namespace: 'ns', query: new URLSearchParams(), body: Buffer.alloc(0), wantTable: false, warnings: [], fieldManager: 't' };

    const clean = await handlers.list(req);
    assert.ok(clean.body instanceof StreamedBody);
    let text = '';
    await clean.body.writeTo(async (c) => { text += c; });
    assert.equal((JSON.parse(text) as { items: unknown[] }).items.length, 1200);

    const reply = await handlers.list(req); // scanned clean: the reply is a 200 body
    keyLost = true;
    let partial = '';
    await assert.rejects((reply.body as StreamedBody).writeTo(async (c) => { partial += c; }), /the key is gone/);
    assert.ok(partial.length > 0 && !partial.endsWith(']}'), 'the body was cut, not closed');
    assert.throws(() => JSON.parse(partial));
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
