// `atrest serve` as a child process for the memory and rewrite suites, run as atrestCommand() says
// (the built CLI when it is up to date, else a private build, else the sources through tsx). Gives
// the server's URL, admin token and CA (from its admin.kubeconfig), an HTTPS JSON client, the
// process's memory from /proc/<pid>/status, and a graceful stop.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parse } from 'yaml';
import { repoRoot } from '../test/helpers/plugin.js';

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

export interface AtrestCommand {
  /** Node arguments before the atrest subcommand. */
  argv: string[];
  /** What runs: `dist` (bin/atrest.js), `bench build` (a private build, node_modules/.cache/atrest-bench) or `tsx` (sources). */
  how: 'dist' | 'bench build' | 'tsx';
}

let cached: AtrestCommand | undefined;

/**
 * How to run the CLI for measurements: `node bin/atrest.js` when dist/ is at least as new as src/;
 * else, with `build`, a private compile into node_modules/.cache/atrest-bench (dist/ is left alone:
 * other work may be using it); else the sources through tsx, whose loader adds ~25 MB of RSS and start-up time.
 */
export function atrestCommand(build = false, log: (m: string) => void = () => undefined): AtrestCommand {
  if (cached && (cached.how !== 'tsx' || !build)) return cached;
  const srcNewest = newestMtime(join(repoRoot, 'src'));
  const dist = join(repoRoot, 'dist');
  if (existsSync(join(dist, 'cli', 'main.js')) && newestMtime(dist) >= srcNewest) {
    return (cached = { argv: [join(repoRoot, 'bin', 'atrest.js')], how: 'dist' });
  }
  // Under node_modules/.cache: git- and lint-ignored, and packages still resolve from there.
  const cache = join(repoRoot, 'node_modules', '.cache', 'atrest-bench');
  const out = join(cache, 'dist');
  const runner = join(cache, 'atrest.mjs');
  const fresh = () => existsSync(join(out, 'cli', 'main.js')) && existsSync(runner) && newestMtime(out) >= srcNewest;
  if (build && !fresh()) {
    log('dist/ is older than src/: compiling the CLI into node_modules/.cache/atrest-bench (tsc, ~20 s)');
    rmSync(out, { recursive: true, force: true });
    const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
    // tsc still emits when someone else's file has a type error; main.js existing is what counts.
    spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', out], { cwd: repoRoot, stdio: 'ignore' });
    writeFileSync(runner, `import { main } from './dist/cli/main.js';\nmain(process.argv).catch((err) => { process.stderr.write(\`atrest: \${err instanceof Error ? err.message : String(err)}\\n\`); process.exit(1); });\n`);
  }
  if (fresh()) return (cached = { argv: [runner], how: 'bench build' });
  return (cached = { argv: ['--import', 'tsx', join(repoRoot, 'src', 'cli', 'run.ts')], how: 'tsx' });
}

/** Fields of /proc/<pid>/status in MB (VmRSS, VmHWM, ...). */
export function procMemoryMb(pid: number): { rss: number; hwm: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

export interface ServeProcess {
  pid: number;
  url: string;
  kubeconfig: string;
  /** What ran (see atrestCommand). */
  how: AtrestCommand['how'];
  /** One HTTPS request with the admin token; resolves to status and body text (throws on transport errors). */
  call(method: string, path: string, body?: unknown, contentType?: string): Promise<{ status: number; text: string }>;
  stderr(): string;
  stop(): Promise<number | null>;
}

export async function startServe(dataDir: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  const cmd = atrestCommand();
  const proc = spawn(process.execPath, [...cmd.argv, 'serve', '--secure-port', '0', '--data-dir', dataDir, ...args], {
    cwd: repoRoot, env: { ...process.env, ATREST_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-20_000); });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const info = await new Promise<{ url: string; kubeconfig: string }>((resolve, reject) => {
    createInterface({ input: proc.stdout }).once('line', (line) => resolve(JSON.parse(line) as { url: string; kubeconfig: string }));
    void exited.then((code) => reject(new Error(`atrest serve exited ${code}: ${stderr}`)));
  });
  const kc = parse(readFileSync(info.kubeconfig, 'utf8')) as {
    clusters: Array<{ cluster: { 'certificate-authority-data': string } }>;
    users: Array<{ user: { token: string } }>;
  };
  const ca = Buffer.from(kc.clusters[0]!.cluster['certificate-authority-data'], 'base64');
  const token = kc.users[0]!.user.token;
  const agent = new Agent({ ca, keepAlive: true, maxSockets: 64 });
  const call = (method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; text: string }> => new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(new URL(path, info.url), {
      method, agent,
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json', ...(payload ? { 'Content-Type': contentType, 'Content-Length': String(payload.length) } : {}) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
  return {
    pid: proc.pid!,
    url: info.url,
    kubeconfig: info.kubeconfig,
    how: cmd.how,
    call,
    stderr: () => stderr,
    stop: async () => {
      agent.destroy();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
