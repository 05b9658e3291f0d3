// Issue #16, group commit of the embedded store: `atrest serve` (a real process, embedded store,
// aesgcm for secrets) takes creates and updates from 16 concurrent HTTPS clients, so writes share
// commits; it is SIGKILLed at random moments of that load (seeded RNG; the seed is printed,
// ATREST_RELIABILITY_SEED replays it) and restarted on the same data dir, several times. Asserted:
// every acknowledged write (a 201/200 received) is there after the restarts with its value (or a
// later one the client attempted), writes cut off by a kill were at most not acknowledged, and every
// stored value is aesgcm-encrypted (no plaintext). SIGKILL is a process crash: it shows that no
// answer is sent before its commit; that the commit is durable against power loss is SQLite's
// synchronous=FULL (the WAL fsynced at COMMIT), which a test cannot cut the power on.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import type { RunningApiServer } from '../../src/api/index.js';
import { openStore } from '../../src/storage/open.js';
import { cliSource, makeTempDir, repoRoot } from '../helpers/plugin.js';
import { apiRequest, writeAesGcmConfig } from '../helpers/server.js';
import { captureLog } from '../helpers/test-log.js';
import { report, secretBody, sleep, valueOf, rng } from './load.js';

const KILLS = 4;
const CLIENTS = 16;
const SECRETS = '/api/v1/namespaces/default/secrets';


interface Serve {
  child: ChildProcess;
  server: RunningApiServer;
}

/** Starts `atrest serve` on `dataDir` and waits for its machine-readable first line. */
async function startServe(dataDir: string, config: string): Promise<Serve> {
  const child = spawn(process.execPath, ['--import', 'tsx', cliSource, 'serve', '--secure-port', '0', '--data-dir', dataDir, '--encryption-provider-config', config], {
    cwd: repoRoot, env: { ...process.env, ATREST_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  captureLog('crash-writes-serve', child.stderr!);
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code, signal) => reject(new Error(`atrest serve exited (${code ?? signal}) before serving: ${stderr}`)));
  });
  const { url, port, kubeconfig } = JSON.parse(line) as { url: string; port: number; kubeconfig: string };
  const kc = parseYaml(readFileSync(kubeconfig, 'utf8')) as {
    clusters: Array<{ cluster: { 'certificate-authority-data': string } }>;
    users: Array<{ user: { token: string } }>;
  };
  const server = {
    url, port, kubeconfigPath: kubeconfig, token: kc.users[0]!.user.token,
    caPem: Buffer.from(kc.clusters[0]!.cluster['certificate-authority-data'], 'base64').toString(),
  } as unknown as RunningApiServer; // what apiRequest uses: url, token, caPem
  return { child, server };
}

/** Per object: the acknowledged value and the values attempted after it (any may have landed). */
interface Track { acked?: string; pending: string[]; exists: boolean }

test('embedded store: atrest serve SIGKILLed during concurrent writes, restarted: no acknowledged write lost, nothing in plaintext', { timeout: 180_000 }, async () => {
  const seed = Number(process.env['ATREST_RELIABILITY_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`crash-writes seed ${seed} (ATREST_RELIABILITY_SEED=${seed} replays the kill delays)`);
  const random = rng(seed);
  const { dir, cleanup } = await makeTempDir('atrest-crash-writes-');
  const dataDir = join(dir, 'data');
  // aesgcm key `k1` for secrets (a random key, registered for the log scan).
  const config = writeAesGcmConfig(dir, 'k1').path;
  const tracks = new Map<string, Track>();
  const counts = { attempted: 0, acknowledged: 0, failed: 0, creates: 0, updates: 0 };
  const kills: Array<{ delayMs: number; writesAckedBefore: number; inFlightAtKill: number }> = [];
  let serve: Serve | undefined;
  try {
    for (let round = 0; round <= KILLS; round++) {
      serve = await startServe(dataDir, config);
      const { server } = serve;
      if (round === KILLS) break; // the last start only serves the checks below
      let running = true;
      let inFlight = 0;
      const worker = async (w: number): Promise<void> => {
        const own: string[] = []; // this worker's objects whose create was acknowledged
        for (let n = 0; running; n++) {
          // Mostly creates (the group commit's main path), every third request an update of an own object.
          const update = n % 3 === 2 && own.length > 0;
          const name = update ? own[n % own.length]! : `r${round}-w${w}-${n}`;
          const value = `${name}#${n}`;
          const track = tracks.get(name) ?? { pending: [], exists: false };
          tracks.set(name, track);
          track.pending.push(value);
          counts.attempted++;
          inFlight++;
          let status = 0;
          try {
            const r = update
              ? await apiRequest(server, 'PUT', `${SECRETS}/${name}`, { body: secretBody(name, value) })
              : await apiRequest(server, 'POST', SECRETS, { body: secretBody(name, value) });
            status = r.status;
          } catch {
            // the connection died with the server: not acknowledged
          } finally {
            inFlight--;
          }
          if (status === 201 || status === 200) {
            counts.acknowledged++;
            if (update) counts.updates++;
            else {
              counts.creates++;
              own.push(name);
            }
            track.acked = value;
            track.pending = [];
            track.exists = true;
          } else {
            counts.failed++;
            if (status === 0) return; // the server is gone: this worker stops until the restart
            assert.fail(`${update ? 'PUT' : 'POST'} ${name} answered ${status} while the server was up`);
          }
        }
      };
      const workers = Array.from({ length: CLIENTS }, (_, w) => worker(w));
      // Let the load get going, then kill at a random moment of it.
      const delayMs = Math.round(700 + random() * 1300);
      await sleep(delayMs);
      const writesAckedBefore = counts.acknowledged;
      kills.push({ delayMs, writesAckedBefore, inFlightAtKill: inFlight });
      const exited = new Promise((r) => serve!.child.once('exit', r));
      serve.child.kill('SIGKILL');
      await exited;
      running = false;
      await Promise.all(workers);
      serve = undefined;
    }

    // Every acknowledged write is there, with its value or one attempted after it.
    const lost: string[] = [];
    let checked = 0;
    for (const [name, t] of tracks) {
      if (t.acked === undefined) continue;
      checked++;
      const r = await apiRequest(serve!.server, 'GET', `${SECRETS}/${name}`);
      const got = r.status === 200 ? valueOf(r) : `HTTP ${r.status}`;
      if (got !== t.acked && !t.pending.includes(got)) lost.push(`${name}: acknowledged ${t.acked}, found ${got}`);
    }
    const exited = new Promise((r) => serve!.child.once('exit', r));
    serve!.child.kill('SIGTERM');
    await exited;
    serve = undefined;

    // Raw scan of the store: every secret aesgcm-encrypted, no plaintext value anywhere.
    const store = await openStore({ dataDir, readonly: true });
    let scanned = 0;
    let notEncrypted = 0;
    let plaintext = 0;
    try {
      for (const kv of (await store.list('/registry/secrets/')).items) {
        scanned++;
        if (!kv.value.subarray(0, 21).equals(Buffer.from('k8s:enc:aesgcm:v1:k1:'))) notEncrypted++;
        const name = kv.key.split('/').at(-1)!;
        if (kv.value.includes(Buffer.from(name)) || kv.value.includes(Buffer.from('"kind":"Secret"'))) plaintext++;
      }
    } finally {
      await store.close();
    }

    report('9. Crash during writes (embedded store, group commit)', {
      seed, kills: kills.length, clients: CLIENTS, killsDetail: kills,
      writesAttempted: counts.attempted, writesAcknowledged: counts.acknowledged, createsAcknowledged: counts.creates, updatesAcknowledged: counts.updates,
      writesCutOffByKills: counts.failed, objectsChecked: checked, acknowledgedLost: lost.length,
      storedValuesScanned: scanned, notEncrypted, plaintext,
    });
    assert.equal(kills.length, KILLS);
    assert.ok(kills.every((k) => k.inFlightAtKill > 0), `every kill landed with writes in flight: ${JSON.stringify(kills)}`);
    assert.ok(counts.acknowledged > 0 && checked > 0);
    assert.deepEqual(lost, [], 'no acknowledged write was lost');
    assert.ok(scanned >= checked, 'every object with an acknowledged write is stored');
    assert.equal(notEncrypted, 0, 'every stored secret is aesgcm-encrypted');
    assert.equal(plaintext, 0, 'no plaintext in the store');
  } finally {
    if (serve && serve.child.exitCode === null && serve.child.signalCode === null) serve.child.kill('SIGKILL');
    await cleanup();
  }
});
