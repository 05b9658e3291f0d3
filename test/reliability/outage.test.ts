// Issue #8 item 1, KMS outage under load: `atrest serve` (in-process startApiServer, real HTTPS)
// with a kms provider (v1, then v2) backed by a real `atrest kms-plugin` process (local backend) on
// a UNIX socket. A few concurrent clients write and read while the plugin is SIGKILLed and restarted
// 3 times. Asserted: no acknowledged write lost, every stored value carries the kms write prefix (no
// plaintext, no other provider), failed writes fail with an error (never stored in plaintext), kms v2
// reads of existing objects never fail while the plugin is down (the DEK cache). Reported: counts
// and the time from the plugin being back to the first acknowledged write.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStore } from '../../src/storage/open.js';
import { makeTempDir, PluginProcess, runAtrest } from '../helpers/plugin.js';
import { startTestServer } from '../helpers/server.js';
import { report, seed, sleep, WriteReadLoad } from './load.js';

const KILLS = 3;
const PROVIDER = 'outage';

for (const version of ['v1', 'v2'] as const) {
  test(`kms ${version}: plugin SIGKILLed and restarted ${KILLS}× under load loses nothing and stores nothing in plaintext`, { timeout: 120_000 }, async () => {
    const { dir, cleanup } = await makeTempDir('atrest-outage-');
    const keyFile = join(dir, 'kek.json');
    const socket = join(dir, 'kms.sock');
    const startPlugin = async (): Promise<PluginProcess> => {
      const p = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile]);
      await p.waitForEvent('start', 60_000);
      return p;
    };
    let plugin: PluginProcess | undefined;
    const dataDir = join(dir, 'data');
    let server: Awaited<ReturnType<typeof startTestServer>> | undefined;
    try {
      const init = await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
      assert.equal(init.code, 0, init.stderr);
      plugin = await startPlugin();
      const config = join(dir, 'encryption.yaml');
      writeFileSync(config, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          ${version === 'v2' ? 'apiVersion: v2' : 'apiVersion: v1\n          cachesize: 1000'}
          name: ${PROVIDER}
          endpoint: unix://${socket}
          timeout: 2s
`);
      server = await startTestServer({
        dataDir, encryptionProviderConfig: config,
        kmsIntervals: { statusHealthyMs: 1000, statusUnhealthyMs: 250, probeNegativeTtlMs: 250, initialReconnectBackoffMs: 50, maxReconnectBackoffMs: 250 },
      }, join(dir, 'server'));
      const s = server.server;
      const readTargets = await seed(s, `seed-${version}`, 20);
      const load = new WriteReadLoad({ servers: [s], workers: 4, objectsPerWorker: 10, readTargets, prefix: `load-${version}` });

      const down: Array<{ from: number; to: number }> = [];
      const recoveryMs: number[] = [];
      for (let k = 0; k < KILLS; k++) {
        await sleep(1000);
        const before = load.acked;
        plugin.signal('SIGKILL');
        await plugin.exited;
        const from = Date.now();
        await sleep(1500);
        plugin = await startPlugin();
        const back = Date.now();
        down.push({ from, to: back });
        // Recovery: from the plugin serving again to the next acknowledged write.
        const firstOk = await (async () => {
          const deadline = Date.now() + 60_000;
          while (Date.now() < deadline) {
            const e = load.events.find((x) => x.kind === 'write' && x.ok && x.at >= back);
            if (e) return e.at;
            await sleep(20);
          }
          throw new Error(`no acknowledged write within 60 s after the plugin came back (acked before: ${before})`);
        })();
        recoveryMs.push(firstOk - back);
      }
      await sleep(1000);
      await load.stop();

      const inDown = (at: number) => down.some((d) => at >= d.from && at <= d.to);
      const writes = load.events.filter((e) => e.kind === 'write');
      const reads = load.events.filter((e) => e.kind === 'read');
      const failedWrites = writes.filter((e) => !e.ok);
      const failedReadsDown = reads.filter((e) => !e.ok && inDown(e.at));
      const failedReadsUp = reads.filter((e) => !e.ok && !inDown(e.at));
      const { checked, lost } = await load.verify(s);

      // Writes that failed did so with an error reply (5xx/timeout Status), not silently.
      const unclear = failedWrites.filter((e) => e.status < 500 && e.status !== 0 && e.status !== 409);
      const errorSample = failedWrites.find((e) => e.status >= 500)?.message;

      await server.close();
      server = undefined;
      // Raw scan of the embedded store: every secret must carry the kms write prefix.
      const store = await openStore({ dataDir, readonly: true });
      const want = Buffer.from(`k8s:enc:kms:${version}:${PROVIDER}:`);
      let scanned = 0;
      let notKms = 0;
      let plaintext = 0;
      try {
        const { items } = await store.list('/registry/secrets/');
        for (const kv of items) {
          scanned++;
          if (!kv.value.subarray(0, want.length).equals(want)) notKms++;
          if (kv.value.includes('"kind":"Secret"')) plaintext++;
        }
      } finally {
        await store.close();
      }

      const figures = {
        kms: version, kills: KILLS, writesAttempted: writes.length, writesAcked: writes.length - failedWrites.length,
        writesFailed: failedWrites.length, writesFailedWhileDown: failedWrites.filter((e) => inDown(e.at)).length,
        ackedObjectsChecked: checked, ackedWritesLost: lost.length,
        storedValuesScanned: scanned, storedNotKmsWriteProvider: notKms, storedPlaintext: plaintext,
        readsTotal: reads.length, readsWhileDown: reads.filter((e) => inDown(e.at)).length,
        readsFailedWhileDown: failedReadsDown.length, readsFailedWhileUp: failedReadsUp.length,
        recoveryMsAfterPluginBack: recoveryMs, downWindowsMs: down.map((d) => d.to - d.from),
        writeErrorSample: errorSample?.slice(0, 200),
      };
      report('1. KMS outage under load', figures);

      assert.deepEqual(lost, [], 'no acknowledged write is lost');
      assert.ok(checked > 0 && scanned >= checked + readTargets.size, `scanned ${scanned} values`);
      assert.equal(notKms, 0, `every value starts with ${want.toString()}`);
      assert.equal(plaintext, 0, 'no plaintext in the store');
      assert.deepEqual(unclear, [], 'failed writes answer with an error status');
      for (const e of failedWrites.filter((x) => x.status >= 500)) assert.match(e.message ?? '', new RegExp(`failed to encrypt.*kms ${version} provider \\\\"${PROVIDER}`), 'the error names the provider');
      if (version === 'v2') assert.equal(failedReadsDown.length, 0, 'kms v2 reads come from the DEK cache while the plugin is down');
    } finally {
      await server?.close();
      await plugin?.stop();
      await cleanup();
    }
  });
}
