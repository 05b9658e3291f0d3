// Issue #8 item 7, limits: a real `atrest serve` process (--max-requests-inflight 20
// --max-mutating-requests-inflight 10, aesgcm) gets its throughput measured for a moment, then a burst
// of 10× that many requests issued at once (half creates, half reads; as many concurrent as the
// client's open-file limit allows). Asserted: the process stays up,
// every answer is 2xx or 429 (with Retry-After) or a clean connection error, peak RSS (VmHWM) stays
// bounded, and it answers normally afterwards. Reported: throughput, burst size, status counts, VmHWM.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { cliSource, repoRoot } from '../helpers/plugin.js';
import { apiRequest, serveClient, writeAesGcmConfig, type HttpResult } from '../helpers/server.js';
import { captureLog } from '../helpers/test-log.js';
import { report, secretBody, sleep } from './load.js';

/** Bound for peak RSS of the server process: generous, it catches unbounded growth only. */
const MAX_VMHWM_MB = 1024;
/**
 * How many of the burst's requests the test client keeps open at once: each is one socket, so this
 * stays under this process's open-file limit; the rest of the burst queues client-side and goes out
 * as sockets free up, so the server still gets all 10× within about a second.
 */
function maxInFlight(): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const soft = Number(m?.[1] ?? 1024);
  return Math.max(200, Math.min(12_000, Math.floor(soft * 0.7)));
}

function memoryKb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN);
}

test('a burst of 10× the measured throughput gets 2xx or 429, never a crash or unbounded memory', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-limits-'));
  const dataDir = join(dir, 'data');
  const config = writeAesGcmConfig(dir).path;
  const child = spawn(process.execPath, ['--import', 'tsx', cliSource, 'serve', '--secure-port', '0', '--data-dir', dataDir, '--encryption-provider-config', config,
    '--max-requests-inflight', '20', '--max-mutating-requests-inflight', '10'], { cwd: repoRoot, env: { ...process.env, ATREST_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-20_000); });
  captureLog('limits-serve', child.stderr);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const info = await new Promise<{ url: string; port: number; kubeconfig: string }>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', (l) => resolve(JSON.parse(l) as { url: string; port: number; kubeconfig: string }));
      void exited.then((c) => reject(new Error(`serve exited ${c}: ${stderr}`)));
    });
    const server = serveClient(info.url, dataDir);
    const pid = child.pid as number;
    let seq = 0;
    const op = (i: number): Promise<HttpResult> => (i % 2 === 0
      ? apiRequest(server, 'POST', '/api/v1/namespaces/default/secrets', { body: secretBody(`s-${seq++}`, 'v'.repeat(512)) })
      : apiRequest(server, 'GET', '/api/v1/namespaces/default/secrets/s-0'));
    assert.equal((await op(0)).status, 201);

    // Throughput: 8 clients back to back for 2 s.
    let done = 0;
    const measureUntil = Date.now() + 2000;
    const started = Date.now();
    await Promise.all(Array.from({ length: 8 }, async (_, w) => {
      for (let i = w; Date.now() < measureUntil; i++) {
        const r = await op(i);
        if (r.status < 300) done++;
      }
    }));
    const throughput = done / ((Date.now() - started) / 1000);
    const rssBeforeKb = memoryKb(pid, 'VmRSS');

    const burst = Math.max(100, Math.round(10 * throughput));
    const inFlightCap = maxInFlight();
    const counts: Record<string, number> = {};
    let missingRetryAfter = 0;
    let next = 0;
    // inFlightCap lanes pull from one queue of `burst` requests: all of them are issued back to back.
    await Promise.all(Array.from({ length: Math.min(burst, inFlightCap) }, async () => {
      for (let i = next++; i < burst; i = next++) {
        let key: string;
        try {
          const r = await op(i);
          key = String(r.status);
          if (r.status === 429 && r.headers['retry-after'] !== '1') missingRetryAfter++;
        } catch (err) {
          key = `error:${(err as NodeJS.ErrnoException).code ?? 'unknown'}`;
        }
        counts[key] = (counts[key] ?? 0) + 1;
      }
    }));
    const alive = child.exitCode === null && child.signalCode === null;
    const vmHwmKb = memoryKb(pid, 'VmHWM');
    await sleep(200);
    const after = [await op(0), await op(1), await apiRequest(server, 'GET', '/readyz')].map((r) => r.status);

    report('7. Limits', {
      maxRequestsInflight: 20, maxMutatingRequestsInflight: 10, measuredThroughputPerS: Math.round(throughput), burstRequests: burst,
      clientInFlightCap: inFlightCap, statuses: counts, missingRetryAfter, alive, rssBeforeBurstMb: Math.round(rssBeforeKb / 1024), vmHwmMb: Math.round(vmHwmKb / 1024), afterStatuses: after,
    });
    assert.ok(alive, `the server process is alive: ${stderr}`);
    const unexpected = Object.keys(counts).filter((k) => !['200', '201', '429'].includes(k) && !k.startsWith('error:'));
    assert.deepEqual(unexpected, [], `only 2xx, 429 or connection errors: ${JSON.stringify(counts)}`);
    assert.equal(missingRetryAfter, 0, 'every 429 has Retry-After');
    assert.ok(vmHwmKb / 1024 < MAX_VMHWM_MB, `VmHWM ${Math.round(vmHwmKb / 1024)} MB < ${MAX_VMHWM_MB} MB`);
    assert.deepEqual(after, [201, 200, 200], 'answers normally after the burst');
  } finally {
    child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
});
