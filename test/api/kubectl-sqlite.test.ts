// The real kubectl 1.32 against `atrest serve` on the embedded SQLite store with aesgcm encryption
// for secrets and configmaps: the task page's workflows end to end (one server for the file).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import { kubectlAvailable } from '../helpers/kubectl.js';
import { startTestServer, writeAesGcmConfig, type TestServer } from '../helpers/server.js';
import { kubectlWorkflowTests } from './kubectl-workflows.js';

describe('kubectl against atrest serve (embedded store, aesgcm)', { skip: !kubectlAvailable() && 'no /usr/bin/kubectl' }, () => {
  let ts: TestServer;

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atrest-api-kubectl-'));
    const { path } = writeAesGcmConfig(dir);
    ts = await startTestServer({ encryptionProviderConfig: path }, dir);
  });
  after(async () => {
    await ts?.close();
  });

  kubectlWorkflowTests(() => ({
    server: ts.server,
    dir: ts.dir,
    etcdPrefix: '/registry',
    valuePrefix: 'k8s:enc:aesgcm:v1:key1:',
    rawGet: async (key) => {
      // Read-only, beside the running server (WAL), as `atrest get-raw` does.
      const store = openSqliteStore(join(ts.dataDir, 'store.db'), { readonly: true });
      try {
        return (await store.get(key))?.value;
      } finally {
        await store.close();
      }
    },
  }));
});
