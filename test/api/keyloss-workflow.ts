// KEP-3926 end to end with the real kubectl 1.32, shared by the embedded-store and etcd test files:
// Secrets are written with an aescbc key, the server restarts with a config that no longer has it
// (the key is lost), then list, get, unsafe delete and namespace delete are checked, first without
// the AllowUnsafeMalformedObjectDeletion gate, then with it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ApiServerOptions } from '../../src/api/index.js';
import { Kubectl } from '../helpers/kubectl.js';
import { apiRequest, startTestServer, type TestServer } from '../helpers/server.js';
import { registerTestSecret } from '../helpers/test-log.js';

export interface KeyLossTarget {
  /** Where the server's config files go. */
  dir: string;
  /** Store options shared by every server of the test (the same store each time). */
  store: Pick<ApiServerOptions, 'dataDir' | 'etcdServers' | 'etcdPrefix'>;
  etcdPrefix: string;
}

/** An aescbc config for secrets with the named keys (a new random secret per key), identity as fallback. */
function writeAescbcConfig(dir: string, file: string, keyNames: string[]): string {
  const keys = keyNames.map((name) => {
    const secret = randomBytes(32).toString('base64');
    registerTestSecret(Buffer.from(secret, 'base64'), 'aescbc-key');
    return `            - name: ${name}\n              secret: ${secret}`;
  }).join('\n');
  const path = join(dir, file);
  writeFileSync(path, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
${keys}
      - identity: {}
`);
  return path;
}

/** Registers the tests in the current describe; `target()` is read in before(). */
export function keyLossTests(target: () => KeyLossTarget): void {
  let t: KeyLossTarget;
  let server: TestServer | undefined;
  let k: Kubectl | undefined;
  let lostConfig: string;

  const start = async (gate: boolean): Promise<{ server: TestServer; k: Kubectl }> => {
    k?.cleanup();
    await server?.close();
    server = await startTestServer({
      ...t.store,
      encryptionProviderConfig: lostConfig,
      ...(gate ? { featureGates: { AllowUnsafeMalformedObjectDeletion: true } } : {}),
    }, mkdtempSync(join(tmpdir(), 'atrest-keyloss-srv-')));
    k = new Kubectl(server.server.kubeconfigPath);
    return { server, k };
  };
  const key = (ns: string, name: string): string => `${t.etcdPrefix}/secrets/${ns}/${name}`;
  // kubectl 1.32 (and 1.33) has no --ignore-store-read-error-with-cluster-breaking-potential flag, only
  // the DeleteOptions field: `kubectl delete --raw` sends it as the query parameter kube decodes.
  const unsafeDelete = (ns: string, name: string): string[] => ['delete', '--raw', `/api/v1/namespaces/${ns}/secrets/${name}?ignoreStoreReadErrorWithClusterBreakingPotential=true`];

  before(async () => {
    t = target();
    // Written with key1, which is then lost: the next configs only have key2.
    const first = await startTestServer({ ...t.store, encryptionProviderConfig: writeAescbcConfig(t.dir, 'key1.yaml', ['key1']) }, mkdtempSync(join(tmpdir(), 'atrest-keyloss-srv-')));
    const k1 = new Kubectl(first.server.kubeconfigPath);
    try {
      await k1.ok(['create', 'namespace', 'lost']);
      await k1.ok(['create', 'secret', 'generic', 'broken1', '-n', 'default', '--from-literal=k=lost-value-1']);
      await k1.ok(['create', 'secret', 'generic', 'a', '-n', 'lost', '--from-literal=k=lost-value-a']);
      await k1.ok(['create', 'secret', 'generic', 'b', '-n', 'lost', '--from-literal=k=lost-value-b']);
      await k1.ok(['create', 'configmap', 'cm', '-n', 'lost', '--from-literal=k=v']);
    } finally {
      k1.cleanup();
      await first.close();
    }
    lostConfig = writeAescbcConfig(t.dir, 'key2.yaml', ['key2']);
  });
  after(async () => {
    k?.cleanup();
    await server?.close();
  });

  test('key lost, gate off: list names every broken key, get names key and reason, unsafe delete is ignored', async () => {
    const { server: s, k } = await start(false);
    await k.ok(['create', 'secret', 'generic', 'fresh', '-n', 'default', '--from-literal=k=readable']);

    // kubectl's chunked list (limit=500, Table): one 500 naming all three.
    const listErr = await k.fails(['get', 'secrets', '-A']);
    assert.match(listErr, /Error from server \(StoreReadError\): failed to read one or more secrets from the storage: 3 objects cannot be decrypted or decoded/);
    for (const [ns, name] of [['default', 'broken1'], ['lost', 'a'], ['lost', 'b']] as const) assert.ok(listErr.includes(key(ns, name)), `${name} named: ${listErr}`);
    assert.doesNotMatch(listErr, /fresh/);

    // The unpaginated (streamed) list: the same 500 with one cause per key.
    const raw = await apiRequest(s.server, 'GET', '/api/v1/secrets');
    assert.equal(raw.status, 500, raw.text);
    const status = raw.json<{ reason: string; details: { name: string; kind: string; causes: Array<{ reason: string; field: string }> } }>();
    assert.equal(status.reason, 'StoreReadError');
    assert.deepEqual({ name: status.details.name, kind: status.details.kind }, { name: 'list', kind: 'secrets' });
    assert.deepEqual(status.details.causes.map((c) => c.field), [key('default', 'broken1'), key('lost', 'a'), key('lost', 'b')]);
    assert.ok(status.details.causes.every((c) => c.reason === 'UnexpectedServerResponse'));
    // Outside the broken range the list works.
    assert.match(await k.ok(['get', 'configmaps', '-n', 'lost']), /cm\s+1/);

    const getErr = await k.fails(['get', 'secret', 'broken1', '-n', 'default']);
    assert.match(getErr, /Error from server \(InternalError\)/);
    assert.ok(getErr.includes(key('default', 'broken1')), getErr);
    assert.match(getErr, /no matching key|no matching prefix/i, `the reason: ${getErr}`);
    assert.doesNotMatch(getErr, /lost-value/);
    assert.match(await k.ok(['get', 'secret', 'fresh', '-o', 'jsonpath={.data.k}']), /^cmVhZGFibGU=$/);

    // Without the gate the option is dropped (kube): the normal delete reads the object and fails.
    const delErr = await k.fails(unsafeDelete('default', 'broken1'));
    assert.ok(delErr.includes(key('default', 'broken1')), delErr);
    const viaBody = await apiRequest(s.server, 'DELETE', '/api/v1/namespaces/default/secrets/broken1', { body: JSON.stringify({ ignoreStoreReadErrorWithClusterBreakingPotential: true }) });
    assert.equal(viaBody.status, 500, viaBody.text);
    // And a readable object is deleted normally with it.
    await k.ok(unsafeDelete('default', 'fresh'));
  });

  test('gate on: a readable object is refused, a broken one is deleted unread with kubectl', async () => {
    const { server: s, k } = await start(true);
    await k.ok(['create', 'secret', 'generic', 'fresh', '-n', 'default', '--from-literal=k=readable']);
    const refused = await k.fails(unsafeDelete('default', 'fresh'));
    assert.match(refused, /secrets "fresh" is invalid: ignoreStoreReadErrorWithClusterBreakingPotential: Invalid value: true: is exclusively used to delete corrupt object\(s\), try again by removing this option/);
    assert.match(await k.ok(['get', 'secret', 'fresh']), /fresh/);
    const missing = await k.fails(unsafeDelete('default', 'nope'));
    assert.match(missing, /NotFound|not found/);

    // The normal delete still fails on the broken object; the unsafe one removes it.
    assert.ok((await k.fails(['delete', 'secret', 'broken1'])).includes(key('default', 'broken1')));
    const out = JSON.parse(await k.ok(unsafeDelete('default', 'broken1'))) as { status: string; details: { name: string; kind: string } };
    assert.deepEqual({ status: out.status, ...out.details }, { status: 'Success', name: 'broken1', kind: 'Secret' });
    assert.match(await k.fails(['get', 'secret', 'broken1']), /NotFound/);
    const ok = await apiRequest(s.server, 'GET', '/api/v1/namespaces/default/secrets');
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ok.json<{ items: Array<{ metadata: { name: string } }> }>().items.map((i) => i.metadata.name), ['fresh']);
  });

  test('gate on: a namespace delete blocked by broken objects reports them, then finishes once they are removed', async () => {
    const { server: s, k } = await start(true);
    const err = await k.fails(['delete', 'namespace', 'lost', '--timeout=60s']);
    assert.match(err, /namespace "lost" is stuck Terminating: Failed to delete all resource types, 1 remaining: failed to read one or more secrets from the storage: 2 objects cannot be decrypted or decoded/);
    assert.ok(err.includes(key('lost', 'a')) && err.includes(key('lost', 'b')), err);

    const ns = JSON.parse(await k.ok(['get', 'namespace', 'lost', '-o', 'json'])) as { status: { phase: string; conditions: Array<{ type: string; status: string; reason: string; message: string }> } };
    assert.equal(ns.status.phase, 'Terminating');
    const failure = ns.status.conditions.find((c) => c.type === 'NamespaceDeletionContentFailure');
    assert.equal(failure?.status, 'True');
    assert.equal(failure?.reason, 'ContentDeletionFailed');
    assert.ok(failure?.message.includes(key('lost', 'a')));
    assert.equal(ns.status.conditions.find((c) => c.type === 'NamespaceContentRemaining')?.message, 'Some resources are remaining: secrets. has 2 resource instances');
    // The readable contents went; nothing new may be created meanwhile.
    assert.match(await k.fails(['get', 'configmap', 'cm', '-n', 'lost']), /NotFound/);
    assert.match(await k.fails(['create', 'configmap', 'x', '-n', 'lost']), /because it is being terminated/);

    await k.ok(unsafeDelete('lost', 'a'));
    assert.match(await k.ok(['get', 'namespace', 'lost']), /Terminating/);
    // The last one unblocks the namespace, which is then finished (the namespace controller's retry).
    await k.ok(unsafeDelete('lost', 'b'));
    assert.match(await k.fails(['get', 'namespace', 'lost']), /NotFound/);
    const all = await apiRequest(s.server, 'GET', '/api/v1/secrets');
    assert.equal(all.status, 200, all.text);
  });
}
