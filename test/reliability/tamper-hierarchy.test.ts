// Issue #21 (RELIABILITY.md §4, tampering with the key hierarchy): `atrest serve` (embedded store)
// with a kms v1 and a kms v2 provider on a real `atrest kms-plugin --backend kmip` process (the real
// PyKMIP server). Values are written under two local KEKs (two plugin processes, one after the
// other), then their stored bytes are edited through the storage layer: a value's wrapped local KEK
// (kms v2: the EncryptedObject annotation; kms v1: inside the encrypted DEK) swapped for another
// value's, edited, or removed. Each GET must fail with a Status naming the key; the genuine values
// (also those under the first process's local KEK, unwrapped through the remote) stay readable.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { LOCAL_KEK_ANNOTATION } from '../../src/plugin/hierarchy/envelope.js';
import { openStore } from '../../src/storage/open.js';
import { decodeEncryptedObject, encodeEncryptedObject } from '../../src/transform/kmsv2/encrypted-object.js';
import { makeTempDir, PluginProcess, runAtrest } from '../helpers/plugin.js';
import { startPykmip, type PykmipServer } from '../helpers/pykmip.js';
import { apiRequest, startTestServer } from '../helpers/server.js';

let srv: PykmipServer;
before(async () => { srv = await startPykmip(); });
after(async () => { await srv?.cleanup(); });

const KEY = (name: string): string => `/registry/secrets/default/${name}`;
const V1 = Buffer.from('k8s:enc:kms:v1:kv1:');
const V2 = Buffer.from('k8s:enc:kms:v2:kv2:');

function config(first: 'v1' | 'v2', socket: string): string {
  const v1 = `      - kms:\n          apiVersion: v1\n          name: kv1\n          cachesize: 100\n          endpoint: unix://${socket}\n          timeout: 3s\n`;
  const v2 = `      - kms:\n          apiVersion: v2\n          name: kv2\n          endpoint: unix://${socket}\n          timeout: 3s\n`;
  return `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n${first === 'v1' ? v1 + v2 : v2 + v1}`;
}

/** kms v1 stored value → its encrypted DEK (our envelope) and the rest. */
function splitV1(stored: Buffer): { edek: Buffer; payload: Buffer } {
  const body = stored.subarray(V1.length);
  const n = body.readUInt16BE(0);
  return { edek: body.subarray(2, 2 + n), payload: body.subarray(2 + n) };
}
function joinV1(edek: Buffer, payload: Buffer): Buffer {
  const n = Buffer.alloc(2);
  n.writeUInt16BE(edek.length);
  return Buffer.concat([V1, n, edek, payload]);
}
/** Our v1 envelope: 'H' 1 1 ‖ u16 n ‖ wrapped local KEK ‖ sealed DEK. */
function wrappedOf(edek: Buffer): { wrapped: Buffer; rest: Buffer } {
  const n = edek.readUInt16BE(3);
  return { wrapped: edek.subarray(5, 5 + n), rest: edek.subarray(5 + n) };
}
function withWrapped(edek: Buffer, wrapped: Buffer): Buffer {
  const n = Buffer.alloc(2);
  n.writeUInt16BE(wrapped.length);
  return Buffer.concat([edek.subarray(0, 3), n, wrapped, wrappedOf(edek).rest]);
}

test('key hierarchy: a value whose wrapped local KEK was swapped for another value\'s, edited or removed is rejected naming the key; genuine values read', { timeout: 120_000 }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-tamper-hierarchy-');
  const socket = join(dir, 'kms.sock');
  const dataDir = join(dir, 'data');
  const cfg = join(dir, 'encryption.yaml');
  const env = {
    ATREST_KMS_PLUGIN_BACKEND: 'kmip', ATREST_KMIP_ENDPOINT: srv.endpoint, ATREST_KMIP_CA: srv.pki.client.caPath,
    ATREST_KMIP_CERT: srv.pki.client.certPath, ATREST_KMIP_KEY: srv.pki.client.keyPath, ATREST_KMIP_KEY_NAME: 'tamper-kek',
  };
  let plugin: PluginProcess | undefined;
  try {
    assert.equal((await runAtrest(['kms-plugin', 'init-key'], env)).code, 0);
    // Two plugin processes one after the other: two local KEKs. Each writes <api>-<n>, plus keepers.
    for (const n of [1, 2]) {
      plugin = new PluginProcess(['--listen', `unix://${socket}`], env);
      await plugin.waitForEvent('start');
      for (const api of ['v1', 'v2'] as const) {
        writeFileSync(cfg, config(api, socket));
        const ts = await startTestServer({ dataDir, encryptionProviderConfig: cfg }, join(dir, `srv-${n}-${api}`));
        try {
          for (const name of [`${api}-${n}`, ...(n === 2 ? [`${api}-keep`] : [])]) {
            const r = await apiRequest(ts.server, 'POST', '/api/v1/namespaces/default/secrets', { body: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: { v: `value of ${name}` } }) });
            assert.equal(r.status, 201, r.text);
          }
        } finally {
          await ts.close();
        }
      }
      if (n === 1) assert.equal(await plugin.stop(), 0);
    }

    writeFileSync(cfg, config('v2', socket));
    const store = await openStore({ dataDir });
    const ts = await startTestServer({ dataDir, store, encryptionProviderConfig: cfg }, join(dir, 'srv-read'));
    const counts = { cases: 0, rejectedNamingKey: 0, acceptedTampered: 0, genuineRead: 0 };
    const failures: string[] = [];
    try {
      const raw = async (name: string): Promise<Buffer> => Buffer.from((await store.get(KEY(name)))!.value);
      const overwrite = async (name: string, value: Uint8Array): Promise<void> => {
        const kv = await store.get(KEY(name));
        await store.update(KEY(name), value, kv!.modRevision);
      };
      const read = (name: string) => apiRequest(ts.server, 'GET', `/api/v1/namespaces/default/secrets/${name}`);
      const expectRejected = async (label: string, name: string, value: Buffer): Promise<void> => {
        const orig = await raw(name);
        await overwrite(name, value);
        counts.cases++;
        const r = await read(name);
        if (r.status < 400) { counts.acceptedTampered++; failures.push(`${label}: ${r.status}`); }
        else if (r.status === 500 && r.json<{ message: string }>().message.includes(KEY(name))) counts.rejectedNamingKey++;
        else failures.push(`${label}: ${r.status} ${r.text}`);
        await overwrite(name, orig);
      };

      // kms v2: the annotation holds the wrapped local KEK.
      const prefixV2 = (b: Buffer) => decodeEncryptedObject(b.subarray(V2.length));
      const a = prefixV2(await raw('v2-1'));
      const b = prefixV2(await raw('v2-2'));
      assert.notDeepEqual(a.annotations[LOCAL_KEK_ANNOTATION], b.annotations[LOCAL_KEK_ANNOTATION], 'two local KEKs');
      const edited = Buffer.from(a.annotations[LOCAL_KEK_ANNOTATION]!);
      edited[edited.length - 3]! ^= 0x01;
      for (const [label, annotations] of [
        ['v2 annotation swapped for another value\'s', b.annotations],
        ['v2 annotation edited', { [LOCAL_KEK_ANNOTATION]: edited }],
        ['v2 annotation removed', {}],
      ] as const) {
        await expectRejected(label, 'v2-1', Buffer.concat([V2, encodeEncryptedObject({ ...a, annotations })]));
      }

      // kms v1: the wrapped local KEK is inside the encrypted DEK.
      const v1a = splitV1(await raw('v1-1'));
      const v1b = splitV1(await raw('v1-2'));
      const wa = wrappedOf(v1a.edek).wrapped;
      const wb = wrappedOf(v1b.edek).wrapped;
      assert.notDeepEqual(wa, wb);
      const flipped = Buffer.from(wa);
      flipped[flipped.length - 3]! ^= 0x01;
      await expectRejected('v1 wrapped local KEK swapped for another value\'s', 'v1-1', joinV1(withWrapped(v1a.edek, wb), v1a.payload));
      await expectRejected('v1 wrapped local KEK edited', 'v1-1', joinV1(withWrapped(v1a.edek, flipped), v1a.payload));
      await expectRejected('v1 another value\'s encrypted DEK', 'v1-1', joinV1(v1b.edek, v1a.payload));

      for (const name of ['v1-1', 'v1-2', 'v2-1', 'v2-2', 'v1-keep', 'v2-keep']) {
        const r = await read(name);
        if (r.status === 200 && Buffer.from(r.json<{ data: { v: string } }>().data.v, 'base64').toString() === `value of ${name}`) counts.genuineRead++;
        else failures.push(`genuine ${name}: ${r.status} ${r.text}`);
      }
    } finally {
      await ts.close();
    }
    console.log(`RELIABILITY ${JSON.stringify({ section: 'tamper-hierarchy', ...counts })}`);
    assert.deepEqual(failures, []);
    assert.equal(counts.acceptedTampered, 0);
    assert.equal(counts.rejectedNamingKey, counts.cases);
    assert.equal(counts.genuineRead, 6);
  } finally {
    await plugin?.stop().catch(() => null);
    await cleanup();
  }
});
