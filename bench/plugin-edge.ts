// Suite `edge` (opt-in, issue #19): what the plugin's HTTP/2 edge costs per call, with the least
// noise this machine allows. One child process serves two plugin servers on one local backend —
// one with the edge, one with `authorityRepair: false` (connections handed to grpc-js as accepted,
// the listener before the edge) — so both share the heap, the JIT and the scheduler's mood; the
// grpc-go load generator (bench/go-loadgen, one connection, N goroutines) calls v2 Encrypt on each
// in ABBA order, `rounds` times per caller count. The plugin suite's pair of twin processes
// (bench/plugin.ts) answers the same question end to end through the CLI; two identical processes
// differ by up to ~13 % on a loaded 2-core machine, one process with two servers much less.
//   npm run bench -- --suite edge [--seconds 1.5]
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { makeTempDir, repoRoot } from '../test/helpers/plugin.js';
import type { BenchContext, Row, SuiteResult } from './lib.js';
import { withRatio } from './lib.js';
import { goBinary, goLoad } from './plugin.js';

const CALLERS = [1, 8, 32] as const;

if (process.argv[2] === '--serve') {
  // The child: two servers, one backend, until killed.
  const dir = process.argv[3]!;
  const { localBackend } = await import('../src/plugin/backends/local.js');
  const { startPluginServer } = await import('../src/plugin/server.js');
  const { silentLogger } = await import('../src/log.js');
  const ctx = { log: silentLogger() };
  const keyFile = join(dir, 'kek.json');
  await localBackend.initKey({ keyFile }, ctx);
  const backend = await localBackend.open({ keyFile }, ctx);
  await startPluginServer({ listen: `unix://${join(dir, 'raw.sock')}`, backend, authorityRepair: false });
  await startPluginServer({ listen: `unix://${join(dir, 'edge.sock')}`, backend });
  console.log('ready');
}

export async function run(ctx: BenchContext): Promise<SuiteResult> {
  const title = 'HTTP/2 edge (issue #19): v2 Encrypt calls/s, edge vs --authority-repair=false, two servers in one process, go client, ABBA';
  const loadgen = ctx.quick ? undefined : goBinary('go-loadgen', true, ctx.log);
  if (!loadgen) return { suite: 'edge', title, rows: [], notes: [`n/a (${ctx.quick ? 'not in quick mode' : 'no Go toolchain or binary'})`] };
  const { dir, cleanup } = await makeTempDir('atrest-bench-edge-');
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--serve', dir], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (l) => { if (l === 'ready') resolve(); });
      child.once('exit', (code) => reject(new Error(`edge bench server exited (${code})`)));
    });
    const socket = { raw: join(dir, 'raw.sock'), edge: join(dir, 'edge.sock') };
    for (const s of Object.values(socket)) goLoad(loadgen, s, 'Encrypt', 8, 1); // JIT warm-up for both
    const rounds = 6;
    const rows: Row[] = [];
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    for (const callers of CALLERS) {
      ctx.log(`edge vs repair off, Encrypt x${callers}, ${rounds} ABBA rounds`);
      const raw: number[] = [];
      const edge: number[] = [];
      const perRound: string[] = [];
      for (let r = 0; r < rounds; r++) {
        const m = (which: 'raw' | 'edge'): number => goLoad(loadgen, socket[which], 'Encrypt', callers, ctx.seconds).perSecond;
        const [a1, b1, b2, a2] = [m('raw'), m('edge'), m('edge'), m('raw')];
        raw.push(a1, a2);
        edge.push(b1, b2);
        perRound.push(((b1 + b2) / (a1 + a2)).toFixed(2));
      }
      const name = (what: string): string => `${what}, Encrypt, ${callers} caller${callers === 1 ? '' : 's'}`;
      const base: Row = { name: name('repair off'), metric: 'calls/s (go client)', value: mean(raw), unit: 'calls/s' };
      rows.push(base, { ...withRatio({ name: name('edge'), metric: 'calls/s (go client)', value: mean(edge), unit: 'calls/s' }, base, 0.95), note: `per-round ratios ${perRound.join(', ')}` });
    }
    return {
      suite: 'edge', title, rows,
      notes: [`${ctx.seconds} s per measurement, ${rounds} rounds of raw/edge/edge/raw per caller count; target from issue #19: ≥ 0.95× (no more than 5 % slower)`],
    };
  } finally {
    child.kill('SIGTERM');
    await exited;
    await cleanup();
  }
}
