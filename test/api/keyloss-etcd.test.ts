// KEP-3926 (undecryptable objects) with the real kubectl on a real etcd.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe } from 'node:test';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { kubectlAvailable } from '../helpers/kubectl.js';
import { keyLossTests } from './keyloss-workflow.js';

describe('a lost aescbc key on etcd: list, get, unsafe delete, namespace delete', { skip: (!kubectlAvailable() || !etcdAvailable()) && 'needs kubectl and etcd' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-keyloss-etcd-'));
  let etcd: EtcdCluster;
  before(async () => {
    etcd = await startEtcdCluster(1);
  });
  after(async () => {
    await etcd?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  keyLossTests(() => ({ dir, store: { etcdServers: etcd.endpoints.join(','), dataDir: join(dir, 'data') }, etcdPrefix: '/registry' }));
});
