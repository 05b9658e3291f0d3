// The benchmark framework's contract (see bench/README.md): what a suite module receives (BenchContext),
// what it returns (SuiteResult of Rows), and small shared helpers (closed-loop rate measurement,
// ratio/target rows, size parsing, the results table, the machine description).
import { cpus, freemem, totalmem, type as osType, release as osRelease } from 'node:os';
import { readFileSync } from 'node:fs';

export interface BenchContext {
  /** `--quick`: tiny sizes and short measurements; the whole quick run stays under a minute. */
  readonly quick: boolean;
  /** `--size` parsed to a number (suffixes k/M = 10^3/10^6, KiB/MiB = 2^10/2^20); each suite says what it means. */
  readonly size: number | undefined;
  /** Seconds per measurement: 0.3 in quick mode, 2 otherwise (or `--seconds`). */
  readonly seconds: number;
  /** Progress messages (stderr, prefixed with the suite name); results go in the rows. */
  log(message: string): void;
}

export interface Row {
  /** What was measured, e.g. `kms v2, 1 KiB` or `etcd, 8 clients, create`. */
  name: string;
  /** e.g. `encrypt+decrypt`, `creates`, `peak RSS`. */
  metric: string;
  value: number;
  /** e.g. `ops/s`, `calls/s`, `ms`, `MB`. */
  unit: string;
  /** Name of the row (or the baseline measured in the same run) this row is compared to. */
  baseline?: string;
  /** value / baseline value (or baseline / value for latency-like rows: the suite says which). */
  ratio?: number;
  /** The target, for display: `≥ 0.70×`, `< 200 MB`. */
  target?: string;
  /** Whether the target was met; absent when the row has no target. */
  met?: boolean;
  /** A short remark shown after the table (e.g. what bounds it). */
  note?: string;
}

export interface SuiteResult {
  /** The suite's name as selected by `--suite`. */
  suite: string;
  /** One line: what the suite measures and how. */
  title: string;
  rows: Row[];
  /** Conditions and caveats printed under the table (sizes used, what is not measured, ...). */
  notes?: string[];
}

/** A suite module's export. */
export type SuiteRun = (ctx: BenchContext) => Promise<SuiteResult>;

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6, KiB: 1024, kib: 1024, MiB: 1024 ** 2, mib: 1024 ** 2 };

/** `64KiB` → 65536, `10k` → 10000, `1000` → 1000. Throws on anything else. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2] ?? ''] : undefined;
  if (!m || unit === undefined) throw new Error(`--size: expected a number with an optional k, M, KiB or MiB suffix, got ${JSON.stringify(text)}`);
  return Math.round(Number(m[1]) * unit);
}

/** `1024` → `1 KiB`, `65536` → `64 KiB`. */
export function formatBytes(n: number): string {
  if (n >= 1024 ** 2 && n % 1024 ** 2 === 0) return `${n / 1024 ** 2} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
}

export interface RateResult {
  /** Completed operations per second over the measured window. */
  perSecond: number;
  ops: number;
  /** Per-operation latencies in ms when `latencies: true`. */
  latencies?: number[];
}

/**
 * Closed loop: `concurrency` workers each call `op` and wait for it before the next, for `seconds`.
 * An operation that throws fails the measurement (a benchmark of failing calls measures nothing).
 */
export async function measureRate(op: () => Promise<unknown> | unknown, options: { seconds: number; concurrency?: number; latencies?: boolean }): Promise<RateResult> {
  const concurrency = options.concurrency ?? 1;
  const lat: number[] | undefined = options.latencies ? [] : undefined;
  let ops = 0;
  const start = performance.now();
  const until = start + options.seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < until) {
      const t0 = lat ? performance.now() : 0;
      await op();
      if (lat) lat.push(performance.now() - t0);
      ops++;
    }
  }));
  const elapsed = (performance.now() - start) / 1000;
  return { perSecond: ops / elapsed, ops, ...(lat ? { latencies: lat } : {}) };
}

/**
 * Synchronous variant for CPU-bound in-process operations: runs `op` in batches and checks the clock
 * between batches, so the clock read does not dominate a microsecond-scale operation.
 */
export function measureSyncRate(op: () => void, seconds: number): number {
  let ops = 0;
  let batch = 16;
  const start = performance.now();
  const until = start + seconds * 1000;
  let now = start;
  while (now < until) {
    for (let i = 0; i < batch; i++) op();
    ops += batch;
    now = performance.now();
    if (now - start < 20) batch *= 2;
  }
  return ops / ((now - start) / 1000);
}

export interface PairedRate {
  /** ops/s of `candidate` and of `baseline` over their interleaved slices. */
  candidate: number;
  baseline: number;
  /** candidate ÷ baseline. */
  ratio: number;
}

/**
 * Measures `candidate` against `baseline` in alternating slices (baseline, candidate, baseline, ...)
 * of `seconds / (2 × rounds)` each, so load that drifts during the run (other processes on the same
 * cores) weighs on both alike. Each op runs one at a time (closed loop, one caller).
 */
export async function measurePaired(
  baseline: () => Promise<unknown> | unknown,
  candidate: () => Promise<unknown> | unknown,
  options: { seconds: number; rounds?: number },
): Promise<PairedRate> {
  const rounds = options.rounds ?? 6;
  const slice = options.seconds / (2 * rounds);
  const totals = { b: { ops: 0, s: 0 }, c: { ops: 0, s: 0 } };
  for (let i = 0; i < rounds; i++) {
    const b = await measureRate(baseline, { seconds: slice });
    totals.b.ops += b.ops;
    totals.b.s += b.ops / b.perSecond;
    const c = await measureRate(candidate, { seconds: slice });
    totals.c.ops += c.ops;
    totals.c.s += c.ops / c.perSecond;
  }
  const candidateRate = totals.c.ops / totals.c.s;
  const baselineRate = totals.b.ops / totals.b.s;
  return { candidate: candidateRate, baseline: baselineRate, ratio: candidateRate / baselineRate };
}

/** The p-th percentile (0..100) of `values` (nearest rank). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] as number;
}

/** Adds baseline/ratio to `row` against `base` (value / base value) and, with `min`, a `≥ min×` target. */
export function withRatio(row: Row, base: Row, min?: number): Row {
  const ratio = base.value > 0 ? row.value / base.value : NaN;
  return {
    ...row,
    baseline: base.name,
    ratio,
    ...(min !== undefined ? { target: `≥ ${min.toFixed(2)}×`, met: ratio >= min } : {}),
  };
}

/** Adds an upper-bound target on the value itself (`< max unit`). */
export function withMax(row: Row, max: number): Row {
  return { ...row, target: `< ${max} ${row.unit}`, met: row.value < max };
}

function fmtValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** The suite's rows as an aligned text table, followed by notes. */
export function formatTable(result: SuiteResult): string {
  const header = ['name', 'metric', 'value', 'unit', 'vs baseline', 'ratio', 'target', 'met'];
  const body = result.rows.map((r) => [
    r.name,
    r.metric,
    fmtValue(r.value),
    r.unit,
    r.baseline ?? '',
    r.ratio !== undefined ? `${r.ratio.toFixed(2)}×` : '',
    r.target ?? '',
    r.met === undefined ? '' : r.met ? 'met' : 'MISSED',
  ]);
  // Drop columns no row uses (name/metric/value/unit always stay).
  const keep = header.map((_, i) => i < 4 || body.some((cells) => cells[i] !== ''));
  const rows = [header, ...body].map((cells) => cells.filter((_, i) => keep[i]));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((cells) => (cells[i] ?? '').length)));
  const rightAligned = new Set(['value', 'ratio']);
  const line = (cells: string[]) => cells
    .map((c, i) => (rightAligned.has(rows[0]![i]!) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
    .join('  ')
    .trimEnd();
  const out = [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)];
  for (const r of result.rows) if (r.note) out.push(`  * ${r.name}: ${r.note}`);
  for (const n of result.notes ?? []) out.push(`  - ${n}`);
  return out.join('\n');
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  ramBytes: number;
  freeRamBytes: number;
  loadAverage: number[];
  node: string;
  os: string;
  date: string;
}

export function machineInfo(): MachineInfo {
  let load: number[] = [];
  try {
    load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
  } catch {
    load = [];
  }
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    ramBytes: totalmem(),
    freeRamBytes: freemem(),
    loadAverage: load,
    node: process.version,
    os: `${osType()} ${osRelease()}`,
    date: new Date().toISOString(),
  };
}
