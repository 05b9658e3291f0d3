// --encryption-provider-config-automatic-reload: a changed file is validated and swapped in; stale
// values are rewritten by `kubectl get -A -o json | kubectl replace -f -`; an invalid file or one
// whose KMS provider is not healthy keeps the old configuration.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startApiServer } from '../../src/api/index.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import { waitFor } from '../helpers/python-kms-plugin.js';
import { apiRequest, startTestServer, type TestServer } from '../helpers/server.js';
import { inProcessLogger } from '../helpers/test-log.js';

function aesgcmConfig(keys: Array<{ name: string; secret: string }>): string {
  return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aesgcm:
          keys:
${keys.map((k) => `            - name: ${k.name}\n              secret: ${k.secret}`).join('\n')}
      - identity: {}
`;
}

describe('automatic reload of the encryption configuration', { skip: !kubectlAvailable() && 'no kubectl' }, () => {
  let ts: TestServer;
  let k: Kubectl;
  let configPath: string;
  const key1 = { name: 'key1', secret: randomBytes(32).toString('base64') };
  const key2 = { name: 'key2', secret: randomBytes(32).toString('base64') };

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atrest-api-reload-'));
    configPath = join(dir, 'encryption.yaml');
    writeFileSync(configPath, aesgcmConfig([key1]));
    ts = await startTestServer({ encryptionProviderConfig: configPath, encryptionProviderConfigAutomaticReload: true, reloadIntervalMs: 50 }, dir);
    k = new Kubectl(ts.server.kubeconfigPath);
  });
  after(async () => {
    k?.cleanup();
    await ts?.close();
  });

  async function rawPrefix(name: string): Promise<string> {
    const store = openSqliteStore(join(ts.dataDir, 'store.db'), { readonly: true });
    try {
      const kv = await store.get(`/registry/secrets/default/${name}`);
      return kv ? kv.value.subarray(0, 23).toString('latin1') : '';
    } finally {
      await store.close();
    }
  }

  async function reloads(status: 'success' | 'failure'): Promise<number> {
    const m = (await apiRequest(ts.server, 'GET', '/metrics')).text;
    const match = new RegExp(`apiserver_encryption_config_controller_automatic_reloads_total\\{status="${status}"\\} (\\d+)`).exec(m);
    return match ? Number(match[1]) : 0;
  }

  test('a new key is picked up by polling; replace rewrites stale values with it', async () => {
    await k.ok(['create', 'secret', 'generic', 'old', '--from-literal=a=b']);
    assert.equal(await rawPrefix('old'), 'k8s:enc:aesgcm:v1:key1:');
    const rvBefore = await k.ok(['get', 'secret', 'old', '-o', 'jsonpath={.metadata.resourceVersion}']);

    writeFileSync(configPath, aesgcmConfig([key2, key1]));
    await waitFor(async () => (await reloads('success')) >= 1, 'the reload of the new file');
    await k.ok(['create', 'secret', 'generic', 'new', '--from-literal=a=b']);
    assert.equal(await rawPrefix('new'), 'k8s:enc:aesgcm:v1:key2:');
    assert.equal(await rawPrefix('old'), 'k8s:enc:aesgcm:v1:key1:', 'untouched values keep the old key');
    assert.match(await k.ok(['describe', 'secret', 'old']), /a:\s+1 bytes/);

    const listed = await k.ok(['get', 'secrets', '--all-namespaces', '-o', 'json']);
    await k.ok(['replace', '-f', '-'], { input: listed });
    assert.equal(await rawPrefix('old'), 'k8s:enc:aesgcm:v1:key2:', 'the stale value was rewritten with the new write key');
    const rvAfter = await k.ok(['get', 'secret', 'old', '-o', 'jsonpath={.metadata.resourceVersion}']);
    assert.notEqual(rvAfter, rvBefore);
    // Now current: a second replace is a no-op.
    await k.ok(['replace', '-f', '-'], { input: await k.ok(['get', 'secrets', '-A', '-o', 'json']) });
    assert.equal(await k.ok(['get', 'secret', 'old', '-o', 'jsonpath={.metadata.resourceVersion}']), rvAfter);
  });

  test('an invalid file or an unhealthy KMS provider keeps the old configuration', async () => {
    const failuresBefore = await reloads('failure');
    writeFileSync(configPath, 'apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aesgcm:\n          keys: []\n');
    await waitFor(async () => (await reloads('failure')) > failuresBefore, 'the failed reload');
    await k.ok(['create', 'secret', 'generic', 'after-invalid', '--from-literal=a=b']);
    assert.equal(await rawPrefix('after-invalid'), 'k8s:enc:aesgcm:v1:key2:');

    const failures2 = await reloads('failure');
    writeFileSync(configPath, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: absent
          endpoint: unix://${join(ts.dir, 'no-such-plugin.sock')}
          timeout: 1s
      - aesgcm:
          keys:
            - name: key2
              secret: ${key2.secret}
`);
    await waitFor(async () => (await reloads('failure')) > failures2, 'the reload refused for an unhealthy KMS provider', 30_000);
    await k.ok(['create', 'secret', 'generic', 'after-unhealthy', '--from-literal=a=b']);
    assert.equal(await rawPrefix('after-unhealthy'), 'k8s:enc:aesgcm:v1:key2:');
    assert.equal(await reloads('success'), 1);
  });

  test('automatic reload without a config file is refused with kube\'s message', async () => {
    await assert.rejects(
      startApiServer({ encryptionProviderConfigAutomaticReload: true, log: inProcessLogger('api-server'), dataDir: join(ts.dir, 'unused'), securePort: 0 }),
      { message: '--encryption-provider-config-automatic-reload must be set with --encryption-provider-config' },
    );
  });
});
