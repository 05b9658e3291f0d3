// Issue #8 §4, tampering: values stored under aesgcm, aescbc, secretbox, kms v1 and kms v2 (a real
// `atrest kms-plugin` process, local backend) are tampered with by writing raw bytes into the store
// under a running `atrest serve` (startApiServer in the test process, real HTTPS), once on the
// embedded store and once on a real etcd:
// bit flips, truncation, a value swapped in from another key (AAD = full key), an older value of
// the same key replayed, a kms v2 EncryptedObject with a changed key_id / annotations (re-encoded),
// and a value claiming a provider that is not configured. Each GET must fail with a Status naming
// the key; untouched objects stay readable; the server stays up. A replayed older value of the same
// key authenticates (same key, same AAD): that is detected by nobody, kube included; counted, not hidden.
// Also like kube: aescbc and secretbox have no AAD (a value swapped from another key reads as that
// value), and a kms v2 key_id/annotations change is for the plugin to reject (the local one does not).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStore } from '../../src/storage/open.js';
import type { Store } from '../../src/storage/types.js';
import { decodeEncryptedObject, encodeEncryptedObject } from '../../src/transform/kmsv2/encrypted-object.js';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { makeTempDir, PluginProcess, runAtrest } from '../helpers/plugin.js';
import { apiRequest, startTestServer, type TestServer } from '../helpers/server.js';
import { registerTestSecret } from '../helpers/test-log.js';

const PROVIDERS = ['aesgcm', 'aescbc', 'secretbox', 'kmsv1', 'kmsv2'] as const;
type P = (typeof PROVIDERS)[number];
const NO_AAD = new Set<P>(['aescbc', 'secretbox']);
const KEY = (name: string): string => `/registry/secrets/default/${name}`;

function providerYaml(p: P, socket: string): string {
  const k32 = (n: number): string => { registerTestSecret(Buffer.alloc(32, n), 'tamper-key'); return Buffer.alloc(32, n).toString('base64'); };
  switch (p) {
    case 'aesgcm': return `      - aesgcm:\n          keys:\n            - name: g1\n              secret: ${k32(1)}\n`;
    case 'aescbc': return `      - aescbc:\n          keys:\n            - name: c1\n              secret: ${k32(2)}\n`;
    case 'secretbox': return `      - secretbox:\n          keys:\n            - name: s1\n              secret: ${k32(3)}\n`;
    case 'kmsv1': return `      - kms:\n          apiVersion: v1\n          name: kv1\n          cachesize: 100\n          endpoint: unix://${socket}\n          timeout: 3s\n`;
    case 'kmsv2': return `      - kms:\n          apiVersion: v2\n          name: kv2\n          endpoint: unix://${socket}\n          timeout: 3s\n`;
  }
}

function config(first: P, socket: string): string {
  const order = [first, ...PROVIDERS.filter((p) => p !== first)];
  return `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n${order.map((p) => providerYaml(p, socket)).join('')}`;
}

function secretBody(name: string, value: string): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, data: { v: Buffer.from(value).toString('base64') } });
}

for (const backend of ['embedded', 'etcd'] as const) {
test(`${backend}: tampered values fail closed naming the key; other objects stay readable; the server stays up`, { timeout: 120_000, skip: backend === 'etcd' && !etcdAvailable() && 'needs etcd' }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-tamper-');
  let etcd: EtcdCluster | undefined;
  const keyFile = join(dir, 'kek.json');
  const socket = join(dir, 'kms.sock');
  const dataDir = join(dir, 'data');
  const cfg = join(dir, 'encryption.yaml');
  let plugin: PluginProcess | undefined;
  let ts: TestServer | undefined;
  let store: Store | undefined;
  try {
    if (backend === 'etcd') etcd = await startEtcdCluster(1);
    // The servers and the tampering both go through this store location (the same etcd, or the same SQLite file).
    const location = etcd ? { etcdServers: etcd.endpoints } : { dataDir };
    const init = await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
    assert.equal(init.code, 0, init.stderr);
    plugin = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile]);
    await plugin.waitForEvent('start', 60_000);

    // Per provider: a, b (tamper targets), keep (must stay readable), and an old value of `a` kept for replay.
    const old = new Map<P, Uint8Array>();
    for (const p of PROVIDERS) {
      writeFileSync(cfg, config(p, socket));
      store = await openStore(location);
      ts = await startTestServer({ dataDir, store, encryptionProviderConfig: cfg }, join(dir, `srv-${p}`));
      for (const n of ['a', 'b', 'keep']) {
        const r = await apiRequest(ts.server, 'POST', '/api/v1/namespaces/default/secrets', { body: secretBody(`${p}-${n}`, `v0-${p}-${n}`) });
        assert.equal(r.status, 201, r.text);
      }
      old.set(p, (await store.get(KEY(`${p}-a`)))!.value);
      const got = await apiRequest(ts.server, 'GET', `/api/v1/namespaces/default/secrets/${p}-a`);
      const put = got.json<Record<string, unknown>>();
      put['data'] = { v: Buffer.from(`v1-${p}-a`).toString('base64') };
      const u = await apiRequest(ts.server, 'PUT', `/api/v1/namespaces/default/secrets/${p}-a`, { body: JSON.stringify(put) });
      assert.equal(u.status, 200, u.text);
      await ts.close();
      ts = undefined;
      store = undefined;
    }
    // The reading server: aesgcm first, every provider configured.
    writeFileSync(cfg, config('aesgcm', socket));
    store = await openStore(location);
    const s = store;
    ts = await startTestServer({ dataDir, store, encryptionProviderConfig: cfg }, join(dir, 'srv-read'));
    const server = ts.server;

    const raw = async (name: string): Promise<Buffer> => Buffer.from((await s.get(KEY(name)))!.value);
    const overwrite = async (name: string, value: Uint8Array): Promise<void> => {
      const kv = await s.get(KEY(name));
      await s.update(KEY(name), value, kv!.modRevision);
    };
    const counts = { cases: 0, rejectedNamingKey: 0, acceptedTampered: 0, replayAccepted: 0, swapAcceptedNoAad: 0, kmsv2MetadataAcceptedByPlugin: 0, keepReadable: 0, keepChecked: 0 };
    const failures: string[] = [];
    const expectRejected = async (label: string, name: string): Promise<void> => {
      counts.cases++;
      const r = await apiRequest(server, 'GET', `/api/v1/namespaces/default/secrets/${name}`);
      if (r.status < 400) { counts.acceptedTampered++; failures.push(`${label}: ${r.status}`); return; }
      const st = r.json<{ kind: string; message: string }>();
      if (st.kind === 'Status' && st.message.includes(KEY(name)) && r.status === 500) counts.rejectedNamingKey++;
      else failures.push(`${label}: ${r.status} ${st.message}`);
    };
    const samples: Record<string, string> = {};

    for (const p of PROVIDERS) {
      const origA = await raw(`${p}-a`);
      const origB = await raw(`${p}-b`);
      const prefixLen = origA.indexOf(':', origA.indexOf(p.startsWith('kms') ? 'kv' : ':k8s') + 1) + 1 || 24;
      // Bit flips: in the last byte (tag/MAC), in the middle of the ciphertext, just after the prefix.
      for (const at of [origA.length - 1, Math.floor((prefixLen + origA.length) / 2), prefixLen + 1]) {
        const v = Buffer.from(origA); v[at]! ^= 0x01;
        await overwrite(`${p}-a`, v);
        await expectRejected(`${p} bit flip @${at}`, `${p}-a`);
      }
      // Truncation: drop the last byte; keep only the prefix and a few bytes.
      for (const len of [origA.length - 1, prefixLen + 4]) {
        await overwrite(`${p}-a`, origA.subarray(0, len));
        await expectRejected(`${p} truncated to ${len}`, `${p}-a`);
      }
      // Swap: b's (valid) ciphertext stored under a's key → AAD mismatch.
      await overwrite(`${p}-a`, origB);
      if (NO_AAD.has(p)) {
        // kube's aescbc and secretbox authenticate no context (no AAD): a swapped value reads as the other's.
        counts.cases++;
        const r = await apiRequest(server, 'GET', `/api/v1/namespaces/default/secrets/${p}-a`);
        assert.equal(r.status, 200, r.text);
        assert.equal(Buffer.from(r.json<{ data: { v: string } }>().data.v, 'base64').toString(), `v0-${p}-b`);
        counts.swapAcceptedNoAad++;
      } else {
        await expectRejected(`${p} swapped from ${p}-b`, `${p}-a`);
      }
      const swapped = await apiRequest(server, 'GET', `/api/v1/namespaces/default/secrets/${p}-a`);
      samples[p] = swapped.json<{ message?: string }>().message ?? `status ${swapped.status}`;
      // Replay: a's older value under the same key — authenticates (same key, same AAD).
      await overwrite(`${p}-a`, old.get(p)!);
      const rp = await apiRequest(server, 'GET', `/api/v1/namespaces/default/secrets/${p}-a`);
      if (rp.status === 200) counts.replayAccepted++;
      assert.equal(rp.status, 200, `replay of ${p}: ${rp.text}`);
      await overwrite(`${p}-a`, origA);
    }

    // kms v2: change key_id / annotations / DEK source in the EncryptedObject, re-encoded.
    {
      const origA = await raw('kmsv2-a');
      const prefix = Buffer.from('k8s:enc:kms:v2:kv2:');
      assert.ok(origA.subarray(0, prefix.length).equals(prefix));
      const eo = decodeEncryptedObject(origA.subarray(prefix.length));
      const variants: Array<[string, typeof eo]> = [
        ['key_id changed', { ...eo, keyID: `${eo.keyID}x` }],
        ['annotation added', { ...eo, annotations: { ...eo.annotations, 'evil.example.com': Buffer.from('1') } }],
        ['encrypted DEK source flipped', { ...eo, encryptedDEKSource: Buffer.from(eo.encryptedDEKSource).map((b, i) => (i === 0 ? b ^ 1 : b)) }],
        ['DEK source type changed', { ...eo, encryptedDEKSourceType: eo.encryptedDEKSourceType === 0 ? 1 : 0 }],
      ];
      for (const [label, v] of variants) {
        await overwrite('kmsv2-a', Buffer.concat([prefix, encodeEncryptedObject(v)]));
        if (label === 'key_id changed' || label === 'annotation added') {
          // Not covered by the data AEAD (AAD = the key only, as in kube): the changed EncryptedObject
          // misses the DEK cache and goes to the plugin, which decides. The local backend's ciphertext
          // names its KEK itself, so it decrypts; the value read is the genuine one, never another's.
          counts.cases++;
          const r = await apiRequest(server, 'GET', '/api/v1/namespaces/default/secrets/kmsv2-a');
          if (r.status === 200) {
            assert.equal(Buffer.from(r.json<{ data: { v: string } }>().data.v, 'base64').toString(), 'v1-kmsv2-a');
            counts.kmsv2MetadataAcceptedByPlugin++;
          } else {
            assert.match(r.json<{ message: string }>().message, /\/registry\/secrets\/default\/kmsv2-a/);
            counts.rejectedNamingKey++;
          }
          continue;
        }
        await expectRejected(`kmsv2 ${label}`, 'kmsv2-a');
      }
      await overwrite('kmsv2-a', origA);
    }
    // A value claiming providers / keys that are not configured.
    for (const [label, bytes] of [
      ['unknown aesgcm key', Buffer.concat([Buffer.from('k8s:enc:aesgcm:v1:nokey:'), (await raw('aesgcm-b')).subarray('k8s:enc:aesgcm:v1:g1:'.length)])],
      ['unknown kms v2 provider', Buffer.concat([Buffer.from('k8s:enc:kms:v2:other:'), (await raw('kmsv2-b')).subarray('k8s:enc:kms:v2:kv2:'.length)])],
      ['unknown kms v1 provider', Buffer.concat([Buffer.from('k8s:enc:kms:v1:other:'), (await raw('kmsv1-b')).subarray('k8s:enc:kms:v1:kv1:'.length)])],
      ['unknown prefix', Buffer.from('k8s:enc:rot13:v1:k:abcdef')],
    ] as const) {
      await overwrite('aesgcm-a', bytes);
      await expectRejected(label, 'aesgcm-a');
      samples[label] ??= (await apiRequest(server, 'GET', '/api/v1/namespaces/default/secrets/aesgcm-a')).json<{ message: string }>().message;
    }

    // Untouched objects: still readable with their values; the list skips nothing silently.
    for (const p of PROVIDERS) {
      counts.keepChecked++;
      const r = await apiRequest(server, 'GET', `/api/v1/namespaces/default/secrets/${p}-keep`);
      if (r.status === 200 && Buffer.from(r.json<{ data: { v: string } }>().data.v, 'base64').toString() === `v0-${p}-keep`) counts.keepReadable++;
    }
    const alive = await apiRequest(server, 'GET', '/readyz', { token: null });
    console.log(`RELIABILITY ${JSON.stringify({ section: 'tamper', backend, ...counts, serverAlive: alive.status === 200 })}`);
    for (const [k, m] of Object.entries(samples)) console.log(`tamper sample [${k}]: ${String(m).replace(/default\/[a-z0-9-]+/, 'default/…')}`);
    console.log(`tamper failures: ${JSON.stringify(failures)}`);
    assert.deepEqual(failures, []);
    assert.equal(counts.acceptedTampered, 0);
    assert.equal(counts.rejectedNamingKey + counts.swapAcceptedNoAad + counts.kmsv2MetadataAcceptedByPlugin, counts.cases);
    assert.equal(counts.keepReadable, counts.keepChecked);
    assert.equal(alive.status, 200);
  } finally {
    await ts?.close().catch(() => {});
    await plugin?.stop().catch(() => null);
    await etcd?.cleanup();
    await cleanup();
  }
});
}
