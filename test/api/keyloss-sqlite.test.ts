// KEP-3926 (undecryptable objects) with the real kubectl on the embedded SQLite store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe } from 'node:test';
import { kubectlAvailable } from '../helpers/kubectl.js';
import { keyLossTests } from './keyloss-workflow.js';

describe('a lost aescbc key on the embedded store: list, get, unsafe delete, namespace delete', { skip: !kubectlAvailable() && 'no /usr/bin/kubectl' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-keyloss-sqlite-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  keyLossTests(() => ({ dir, store: { dataDir: join(dir, 'data') }, etcdPrefix: '/registry' }));
});
