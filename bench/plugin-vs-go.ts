// Encrypt calls per second: `atrest kms-plugin` (local backend) vs a minimal Go plugin built with
// grpc-go (bench/go-plugin), same machine, same load generator as bench/plugin.ts (one shared gRPC
// channel, N callers each sending a v2 Encrypt of a 32-byte DEK and awaiting the answer).
// Rows alternate atrest / go. Then, to see whether the (single-threaded) load generator is the
// bound, 2 load-generator processes x 16 callers each against each plugin at the same time.
//   node --import tsx bench/plugin-vs-go.ts [--seconds 3] [--go-bin /tmp/atrest-go-plugin]
// The Go binary is built (offline, Debian golang-* packages) if missing: see bench/go-plugin/README.md.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { parseListenAddress } from '../src/plugin/listen-address.js';
import { PluginSocketClient } from '../src/plugin/socket-client.js';
import { makeTempDir, PluginProcess, repoRoot, runAtrest, waitFor } from '../test/helpers/plugin.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => (args.includes(name) ? args[args.indexOf(name) + 1] ?? dflt : dflt);
const seconds = Number(opt('--seconds', '3')) || 3;
const goBin = opt('--go-bin', '/tmp/atrest-go-plugin');
const self = fileURLToPath(import.meta.url);

async function measure(client: PluginSocketClient, callers: number, ms: number): Promise<number> {
  const dek = randomBytes(32);
  let done = 0;
  const until = performance.now() + ms;
  await Promise.all(Array.from({ length: callers }, async () => {
    while (performance.now() < until) {
      await client.encrypt(dek);
      done++;
    }
  }));
  return done;
}

// Worker mode: one load-generator process; waits for "go" on stdin, prints the call count.
if (args.includes('--worker')) {
  const client = new PluginSocketClient(parseListenAddress(`unix://${opt('--socket', '')}`), 10_000);
  await measure(client, 4, 300); // warm-up
  console.log('ready');
  await new Promise<void>((resolve) => createInterface({ input: process.stdin }).once('line', () => resolve()));
  const n = await measure(client, Number(opt('--callers', '16')), seconds * 1000);
  console.log(String(n));
  client.close();
  process.exit(0);
}

/** CPU seconds (user+system) used so far by a process, from /proc (Linux). */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined || !existsSync(`/proc/${pid}/stat`)) return NaN;
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

async function multiProcess(socket: string, procs: number, callersEach: number): Promise<number> {
  const children = Array.from({ length: procs }, () => spawn(process.execPath,
    ['--import', 'tsx', self, '--worker', '--socket', socket, '--callers', String(callersEach), '--seconds', String(seconds)],
    { cwd: repoRoot, stdio: ['pipe', 'pipe', 'inherit'] }));
  const outputs = children.map((c) => {
    const lines: string[] = [];
    createInterface({ input: c.stdout }).on('line', (l) => lines.push(l));
    return { lines, exited: new Promise<void>((r) => c.once('exit', () => r())) };
  });
  await waitFor('workers ready', () => outputs.every((o) => o.lines.includes('ready')), 30_000);
  for (const c of children) c.stdin.write('go\n');
  await Promise.all(outputs.map((o) => o.exited));
  return outputs.reduce((sum, o) => sum + Number(o.lines.at(-1)), 0);
}

if (!existsSync(goBin)) {
  const build = spawnSync('go', ['build', '-o', goBin, './bench/go-plugin'], {
    cwd: repoRoot, stdio: 'inherit',
    env: { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOPROXY: 'off', GOFLAGS: '' },
  });
  if (build.status !== 0) throw new Error('go build failed (see bench/go-plugin/README.md)');
}

const { dir, cleanup } = await makeTempDir('atrest-bench-vs-go-');
const keyFile = join(dir, 'kek.json');
const atrestSocket = join(dir, 'atrest.sock');
const goSocket = join(dir, 'go.sock');
await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
const atrest = new PluginProcess(['--listen', `unix://${atrestSocket}`, '--key-file', keyFile], {});
const go = spawn(goBin, [goSocket], { stdio: ['ignore', 'ignore', 'inherit'] });
try {
  await atrest.waitForEvent('start');
  await waitFor('go plugin socket', () => existsSync(goSocket));
  const clients = {
    atrest: new PluginSocketClient(parseListenAddress(`unix://${atrestSocket}`), 10_000),
    go: new PluginSocketClient(parseListenAddress(`unix://${goSocket}`), 10_000),
  };
  for (const c of Object.values(clients)) {
    await c.roundTrip();
    await measure(c, 8, 500); // warm-up (JIT, connection)
  }
  const rows: Array<{ load: string; atrest: number; go: number; ratio: number; cpu?: Record<string, number> }> = [];
  // Also the plugin's CPU microseconds per call and its CPU use, and the load generator's CPU use:
  // a plugin well under 100 % with the load generator near 100 % means the load generator is the bound.
  const run = async (name: 'atrest' | 'go', callers: number) => {
    const pid = name === 'atrest' ? atrest.pid : go.pid;
    const s0 = cpuSeconds(pid);
    const l0 = process.cpuUsage();
    const n = await measure(clients[name], callers, seconds * 1000);
    const l = process.cpuUsage(l0);
    const s = cpuSeconds(pid) - s0;
    return { perSecond: Math.round(n / seconds), usPerCall: Math.round((s / n) * 1e6), serverPct: Math.round((s / seconds) * 100), loadgenPct: Math.round(((l.user + l.system) / 1e6 / seconds) * 100) };
  };
  for (const callers of [1, 8, 32]) {
    const a = await run('atrest', callers);
    const g = await run('go', callers);
    rows.push({ load: `1 proc x ${callers}`, atrest: a.perSecond, go: g.perSecond, ratio: a.perSecond / g.perSecond,
      cpu: { atrestUsPerCall: a.usPerCall, goUsPerCall: g.usPerCall, atrestPct: a.serverPct, goPct: g.serverPct, loadgenPctAtrest: a.loadgenPct, loadgenPctGo: g.loadgenPct } });
  }
  for (const c of Object.values(clients)) c.close();
  if (!args.includes('--no-multi')) {
    const a = Math.round(await multiProcess(atrestSocket, 2, 16) / seconds);
    const g = Math.round(await multiProcess(goSocket, 2, 16) / seconds);
    rows.push({ load: '2 procs x 16', atrest: a, go: g, ratio: a / g });
  }
  const goVersion = spawnSync('go', ['version'], { encoding: 'utf8' }).stdout.trim();
  console.log(`v2 Encrypt over a UNIX socket, ${seconds} s per row, node ${process.version}, ${goVersion}, grpc-go (Debian golang-google-grpc-dev):`);
  console.log('  load            atrest calls/s    go calls/s   atrest/go   plugin CPU us/call atrest|go   plugin CPU % atrest|go   loadgen CPU % (vs atrest|vs go)');
  for (const r of rows) {
    const c = r.cpu;
    const extra = c ? `${`${c.atrestUsPerCall} | ${c.goUsPerCall}`.padStart(28)} ${`${c.atrestPct} | ${c.goPct}`.padStart(24)} ${`${c.loadgenPctAtrest} | ${c.loadgenPctGo}`.padStart(20)}` : '';
    console.log(`  ${r.load.padEnd(14)} ${String(r.atrest).padStart(15)} ${String(r.go).padStart(13)} ${r.ratio.toFixed(2).padStart(11)} ${extra}`);
  }
  console.log(JSON.stringify({ bench: 'kms-plugin-vs-go-encrypt', seconds, rows }));
} finally {
  go.kill('SIGTERM');
  await atrest.stop();
  await cleanup();
}
