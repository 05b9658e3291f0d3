// Runs the independent python KMS plugin (test/fixtures/python/kms_plugin.py, Debian's python3 with
// python3-grpcio) on a UNIX socket for real-socket tests, and drives its knobs and counters over
// its stdin/stdout. `stop()` kills it (SIGKILL, like a crash); `start()` brings it back on the same
// socket with the same KEK master, so old ciphertexts still unwrap.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const PYTHON = '/usr/bin/python3';
export const PLUGIN_SCRIPT = fileURLToPath(new URL('../fixtures/python/kms_plugin.py', import.meta.url));
export const CROSSCHECK_SCRIPT = fileURLToPath(new URL('../fixtures/python/kms_plugin_crosscheck.py', import.meta.url));
const PROTO_DIR = fileURLToPath(new URL('../../proto', import.meta.url));

export interface PluginKnobs {
  key_id?: string;
  status_key_id?: string | null;
  encrypt_key_id?: string | null;
  status_version?: string;
  healthz?: string;
  v1_version?: string;
  ciphertext?: 'normal' | 'empty' | 'oversized';
  annotations?: Record<string, string>;
  delay_ms?: Record<string, number>;
  fail?: Record<string, string>;
}

export class PythonKmsPlugin {
  readonly master = randomBytes(32).toString('hex');
  private child: ChildProcessWithoutNullStreams | undefined;
  private waiting: Array<(line: string) => void> = [];
  private exited: Promise<void> = Promise.resolve();

  /** @param listen socket path, or `@name` for a Linux abstract socket */
  constructor(readonly listen: string, private readonly keyId = 'key-1') {}

  /** The `kms.endpoint` for this plugin. */
  get endpoint(): string {
    return `unix://${this.listen.startsWith('@') ? '/' : ''}${this.listen}`;
  }

  async start(): Promise<void> {
    if (this.child) throw new Error('plugin already running');
    const child = spawn(PYTHON, [PLUGIN_SCRIPT, '--listen', this.listen, '--proto-dir', PROTO_DIR, '--master', this.master, '--key-id', this.keyId], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => this.waiting.shift()?.(line));
    const ready = await new Promise<string>((resolve, reject) => {
      this.waiting.push(resolve);
      child.once('exit', (code) => reject(new Error(`kms plugin exited (${code}): ${stderr}`)));
    });
    if (!JSON.parse(ready).ready) throw new Error(`kms plugin not ready: ${ready}`);
  }

  private async command(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    const child = this.child;
    if (!child) throw new Error('plugin not running');
    const reply = new Promise<string>((resolve) => this.waiting.push(resolve));
    child.stdin.write(`${JSON.stringify(msg)}\n`);
    return JSON.parse(await reply);
  }

  async set(knobs: PluginKnobs): Promise<void> {
    await this.command({ cmd: 'set', ...knobs });
  }

  async counts(): Promise<Record<string, number>> {
    return (await this.command({ cmd: 'counts' })).counts as Record<string, number>;
  }

  async count(method: string): Promise<number> {
    return (await this.counts())[method] ?? 0;
  }

  async uids(): Promise<string[]> {
    return (await this.command({ cmd: 'uids' })).uids as string[];
  }

  async lastDecrypt(): Promise<{ key_id?: string; annotations?: Record<string, string> }> {
    return this.command({ cmd: 'last_decrypt' });
  }

  /** Kills the plugin like a crash (SIGKILL) and waits for it to exit. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    this.waiting = [];
    child.kill('SIGKILL');
    await this.exited;
  }
}

/** Polls `cond` every 20 ms until it holds or `timeoutMs` passes (then throws with `what`). */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
