// `npm run bench -- [--suite NAME[,NAME]|all] [--size N] [--quick] [--seconds S] [--out FILE]`
// Runs benchmark suites, each in its own child process (a suite's servers, JIT state and heap do not
// leak into the next), prints one aligned table per suite and writes bench/results/latest.json with
// the machine and every suite's rows. Contract for suite modules: bench/README.md and bench/lib.ts.
// No speed assertions anywhere: a missed target is reported, not failed; a suite that crashes fails.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { formatTable, machineInfo, parseSize, type BenchContext, type SuiteResult, type SuiteRun } from './lib.js';

interface SuiteEntry {
  /** File in bench/: a module exporting `run(ctx)` (see lib.ts), unless `script` is given. */
  file: string;
  /** Part of `--suite all`. */
  inAll: boolean;
  /** A legacy script that prints its own output (no rows): its command line after the file. */
  script?: (quick: boolean) => string[];
}

const scriptSeconds = (quick: boolean): string[] => ['--seconds', quick ? '0.3' : '3'];

// The registry. Add a suite here (one line); `all` runs those with inAll in this order.
const SUITES: Record<string, SuiteEntry> = {
  transformers: { file: 'transformers.ts', inAll: true },
  plugin: { file: 'plugin.ts', inAll: true },
  api: { file: 'api.ts', inAll: true },
  rewrite: { file: 'rewrite.ts', inAll: true },
  memory: { file: 'memory.ts', inAll: true },
  kmip: { file: 'kmip.ts', inAll: true, script: scriptSeconds },
  hierarchy: { file: 'hierarchy.ts', inAll: true },
  go: { file: 'plugin-vs-go.ts', inAll: false, script: scriptSeconds },
  edge: { file: 'plugin-edge.ts', inAll: false },
};

const benchDir = dirname(fileURLToPath(import.meta.url));

function usage(message: string): never {
  process.stderr.write(`bench: ${message}\nusage: npm run bench -- [--suite ${Object.keys(SUITES).join('|')}|all (comma-separated list allowed)] [--size N] [--quick] [--seconds S] [--out FILE]\n`);
  process.exit(2);
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) usage(`${name} needs a value`);
  return v;
}

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const sizeText = option(args, '--size');
let size: number | undefined;
try {
  size = sizeText === undefined ? undefined : parseSize(sizeText);
} catch (e) {
  usage((e as Error).message);
}
const secondsText = option(args, '--seconds');
const seconds = secondsText !== undefined ? Number(secondsText) : quick ? 0.3 : 2;
if (!(seconds > 0)) usage('--seconds must be a positive number');

// ---- child mode: run one suite module in this process and write its result as JSON ----
const childSuite = option(args, '--child');
if (childSuite !== undefined) {
  const out = option(args, '--result-file') ?? usage('--child needs --result-file');
  const entry = SUITES[childSuite] ?? usage(`unknown suite ${childSuite}`);
  if (entry.script) usage(`${childSuite} is a script, not a suite module`);
  const mod = (await import(pathToFileURL(join(benchDir, entry.file)).href)) as { run?: SuiteRun };
  if (typeof mod.run !== 'function') throw new Error(`${entry.file} does not export run(ctx)`);
  const ctx: BenchContext = {
    quick,
    size,
    seconds,
    log: (m) => process.stderr.write(`[${childSuite}] ${m}\n`),
  };
  const result = await mod.run(ctx);
  writeFileSync(out, JSON.stringify({ ...result, suite: result.suite || childSuite }));
  // Suites should close what they open; do not let a stray handle keep the child alive.
  process.exit(0);
}

// ---- parent mode ----
const suiteText = option(args, '--suite') ?? 'all';
const selected = suiteText === 'all'
  ? Object.keys(SUITES).filter((n) => SUITES[n]!.inAll)
  : suiteText.split(',').map((s) => s.trim()).filter(Boolean);
for (const name of selected) if (!SUITES[name]) usage(`unknown suite ${JSON.stringify(name)}`);
const outFile = option(args, '--out') ?? join(benchDir, 'results', 'latest.json');
// Quick mode must finish well inside a minute overall; a hung suite is killed.
const suiteTimeoutMs = quick ? 120_000 : 30 * 60_000;

interface SuiteOutcome {
  suite: string;
  status: 'ok' | 'failed' | 'script';
  seconds: number;
  result?: SuiteResult;
  error?: string;
}

function runChild(argv: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...argv], { stdio: 'inherit', cwd: join(benchDir, '..') });
    const timer = setTimeout(() => child.kill('SIGKILL'), suiteTimeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

const machine = machineInfo();
process.stdout.write(`atrest bench${quick ? ' --quick' : ''}: ${machine.cpu}, ${machine.cores} cores, ${(machine.ramBytes / 2 ** 30).toFixed(1)} GiB, node ${machine.node}, load ${machine.loadAverage.join(' ')}\n`);
const outcomes: SuiteOutcome[] = [];
const tmp = join(tmpdir(), `atrest-bench-${process.pid}`);
mkdirSync(tmp, { recursive: true });
for (const name of selected) {
  const entry = SUITES[name]!;
  const file = join(benchDir, entry.file);
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 1000;
  process.stdout.write(`\n== ${name} ==\n`);
  if (entry.script) {
    // A script that prints its own figures (no rows in latest.json).
    const r = await runChild([file, ...entry.script(quick)]);
    const ok = r.code === 0;
    outcomes.push({ suite: name, status: ok ? 'script' : 'failed', seconds: elapsed(), ...(ok ? {} : { error: `exit ${r.code ?? r.signal}` }) });
    continue;
  }
  const resultFile = join(tmp, `${name}.json`);
  const childArgs = [fileURLToPath(import.meta.url), '--child', name, '--result-file', resultFile, '--seconds', String(seconds)];
  if (quick) childArgs.push('--quick');
  if (sizeText !== undefined) childArgs.push('--size', sizeText);
  const r = await runChild(childArgs);
  if (r.code === 0 && existsSync(resultFile)) {
    const result = JSON.parse(readFileSync(resultFile, 'utf8')) as SuiteResult;
    process.stdout.write(`${result.title}\n${formatTable(result)}\n(${elapsed().toFixed(1)} s)\n`);
    outcomes.push({ suite: name, status: 'ok', seconds: elapsed(), result });
  } else {
    const error = r.signal === 'SIGKILL' ? `killed after ${suiteTimeoutMs / 1000} s` : `exit ${r.code ?? r.signal}`;
    process.stdout.write(`suite ${name} FAILED (${error})\n`);
    outcomes.push({ suite: name, status: 'failed', seconds: elapsed(), error });
  }
}
rmSync(tmp, { recursive: true, force: true });

mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, `${JSON.stringify({
  machine,
  options: { quick, size: sizeText ?? null, seconds, suites: selected },
  suites: outcomes.map((o) => ({ suite: o.suite, status: o.status, seconds: Math.round(o.seconds * 10) / 10, ...(o.error ? { error: o.error } : {}), ...(o.result ?? {}) })),
}, null, 2)}\n`);
const failed = outcomes.filter((o) => o.status === 'failed').map((o) => o.suite);
process.stdout.write(`\nwrote ${outFile}${failed.length ? `; FAILED: ${failed.join(', ')}` : ''}\n`);
process.exit(failed.length ? 1 : 0);
