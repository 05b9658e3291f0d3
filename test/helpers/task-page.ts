// Helpers for the KMS task page end to end (test/e2e/task-page.test.ts): the built CLI's
// `atrest kms-plugin` and `atrest serve` as child processes, the page's shell commands run for real
// through bash (etcdctl | hexdump -C, kubectl get | kubectl replace), `atrest verify -o json`, and the
// page's encryption configurations (the fixtures, with the page's socket path swapped for ours).
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { cliPath, repoRoot, runCli } from './cli.js';
import { KUBECTL } from './kubectl.js';
import type { ResourceReport } from '../../src/tools/verify.js';
import { captureLog, keyFileArg, registerKeyFile } from './test-log.js';

const execFileP = promisify(execFile);

/** The socket the page's examples name; replaced by the test's own socket. */
export const PAGE_ENDPOINT = 'unix:///tmp/socketfile.sock';
const fixture = (name: string): string => readFileSync(join(repoRoot, 'test/fixtures/configs', name), 'utf8');

/**
 * The page's configuration files for one KMS API version. For kms v1 they are the page's own legacy
 * `kind: EncryptionConfig` files (block 1 repaired, block 2 with a real key, block 3 as printed);
 * for kms v2 the same files as `EncryptionConfiguration` with `apiVersion: v2` (no cachesize: v2
 * rejects it). `before` is the state before encryption (identity), `aescbc` the local provider the
 * page's "switching" section starts from.
 */
export interface PageConfigs {
  /** kms v1 only: the page's first two files byte for byte, which kube-apiserver refuses (invalid YAML; a placeholder key). */
  asPrinted?: { encrypting: string; switching: string };
  before: string;
  enable: string;
  disable: string;
  aescbc: string;
  switchToKms: string;
}

const AESCBC_KEY1 = 'y3IfJW4jrL1FMjONgwgyjSOPqo1Jo4IA4UAxjpFM3gE='; // the key of task-page-2-with-key.yaml

export function pageConfigs(kms: 'v1' | 'v2', endpoint: string): PageConfigs {
  const withEndpoint = (text: string): string => {
    if (!text.includes(PAGE_ENDPOINT)) throw new Error(`fixture does not name ${PAGE_ENDPOINT}`);
    return text.split(PAGE_ENDPOINT).join(endpoint);
  };
  if (kms === 'v1') {
    const header = 'kind: EncryptionConfig\napiVersion: v1\nresources:\n  - resources:\n    - secrets\n    providers:\n';
    return {
      asPrinted: {
        encrypting: withEndpoint(fixture('task-page/1-encrypting-your-data.yaml')),
        switching: withEndpoint(fixture('task-page/2-switching-to-kms.yaml')),
      },
      before: `${header}    - identity: {}\n`,
      enable: withEndpoint(fixture('valid/task-page-1-repaired.yaml')),
      disable: withEndpoint(fixture('task-page/3-disabling-encryption.yaml')), // loads as printed
      aescbc: `${header}    - aescbc:\n        keys:\n        - name: key1\n          secret: ${AESCBC_KEY1}\n    - identity: {}\n`,
      switchToKms: withEndpoint(fixture('valid/task-page-2-with-key.yaml')),
    };
  }
  const header = 'apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n    - secrets\n    providers:\n';
  const kmsV2 = `    - kms:\n        apiVersion: v2\n        name: myKmsPlugin\n        endpoint: ${endpoint}\n        timeout: 3s\n`;
  const aescbc = `    - aescbc:\n        keys:\n        - name: key1\n          secret: ${AESCBC_KEY1}\n`;
  const identity = '    - identity: {}\n';
  return {
    before: header + identity,
    enable: header + kmsV2 + identity,
    disable: header + identity + kmsV2,
    aescbc: header + aescbc + identity,
    switchToKms: header + kmsV2 + aescbc,
  };
}

/** A running child process of the built CLI whose stderr is kept for failure messages. */
class CliProcess {
  protected readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<number | null>;
  private stderr = '';

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [cliPath, ...args], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
    this.child.stderr.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-32_768); });
    captureLog(`atrest-${args[0] ?? 'cli'}`, this.child.stderr);
    const keyFile = keyFileArg(args);
    if (keyFile) registerKeyFile(keyFile);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  log(): string {
    return this.stderr;
  }

  /** SIGKILL (a crash) and wait for the exit. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM and wait for the exit code (SIGKILL after 10 s). */
  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    try {
      return await this.exited;
    } finally {
      clearTimeout(killer);
    }
  }

  /** Resolves with the first stdout line matching `pattern`; rejects if the process exits first. */
  protected firstLine(pattern: RegExp, what: string, timeoutMs = 30_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: no ${pattern} line within ${timeoutMs} ms:\n${this.stderr}`)), timeoutMs);
      createInterface({ input: this.child.stdout }).on('line', (line) => {
        if (pattern.test(line)) {
          clearTimeout(timer);
          resolve(line);
        }
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${what} exited ${code} before it was ready:\n${this.stderr}`));
      });
    });
  }
}

/** `atrest kms-plugin` (local backend) on a UNIX socket; ready once the socket accepts a call. */
export class KmsPluginProcess extends CliProcess {
  /**
   * Creates a KEK in `dir`/kek.json (`init-key`) and serves it on `dir`/kms.sock. With `keyFile`,
   * serves that existing key file instead (several plugins sharing one KEK, as replicas of an API
   * server do); `keyId` is then empty.
   */
  static async start(dir: string, extraArgs: string[] = [], options: { keyFile?: string } = {}): Promise<KmsPluginProcess> {
    const keyFile = options.keyFile ?? join(dir, 'kek.json');
    let keyId = '';
    if (!options.keyFile) {
      const init = await runCli(['kms-plugin', 'init-key', '--backend', 'local', '--key-file', keyFile]);
      if (init.code !== 0) throw new Error(`kms-plugin init-key failed: ${init.stderr}`);
      keyId = init.stdout.trim();
    }
    const plugin = new KmsPluginProcess(['kms-plugin', '--backend', 'local', '--key-file', keyFile, '--listen', `unix://${join(dir, 'kms.sock')}`, ...extraArgs], { ATREST_LOG_LEVEL: 'info' });
    plugin.keyFile = keyFile;
    plugin.keyId = keyId;
    await plugin.waitForLog(/"event":"start"/);
    return plugin;
  }

  readonly endpoint: string;
  keyFile = '';
  /** The key_id `init-key` printed. */
  keyId = '';

  private constructor(args: string[], env: NodeJS.ProcessEnv) {
    super(args, env);
    this.endpoint = args[args.indexOf('--listen') + 1] as string;
  }

  /** `atrest kms-plugin rotate-key` on this plugin's key file; returns the new key_id it prints. */
  async rotateKey(): Promise<string> {
    const r = await runCli(['kms-plugin', 'rotate-key', '--backend', 'local', '--key-file', this.keyFile]);
    if (r.code !== 0) throw new Error(`kms-plugin rotate-key failed: ${r.stderr}`);
    return r.stdout.trim();
  }

  /** Waits (bounded) until the plugin's stderr log matches `pattern`. */
  async waitForLog(pattern: RegExp, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.log())) {
      if (this.child.exitCode !== null) throw new Error(`kms-plugin exited ${this.child.exitCode}:\n${this.log()}`);
      if (Date.now() > deadline) throw new Error(`kms-plugin logged no ${pattern} within ${timeoutMs} ms:\n${this.log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** `atrest serve` on etcd; ready when it prints its `{"url","port","kubeconfig"}` line. */
export class ServeProcess extends CliProcess {
  kubeconfig = '';
  url = '';

  static async start(args: string[]): Promise<ServeProcess> {
    const serve = new ServeProcess(['serve', '--secure-port', '0', ...args]);
    const line = await serve.firstLine(/^\{"url"/, 'atrest serve');
    const info = JSON.parse(line) as { url: string; kubeconfig: string };
    serve.url = info.url;
    serve.kubeconfig = info.kubeconfig;
    return serve;
  }
}

export interface ShellResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs a command line with bash, as an operator types it. */
export function bash(script: string, env: NodeJS.ProcessEnv): Promise<ShellResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-o', 'pipefail', '-c', script], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
  });
}

/** The page's re-encryption step, verbatim: `kubectl get secrets --all-namespaces -o json | kubectl replace -f -`. */
export async function replaceAllSecrets(kubeconfig: string, home: string): Promise<string> {
  mkdirSync(home, { recursive: true });
  // KUBECTL's folder first on PATH, so the command line is the page's own.
  const path = `${dirname(KUBECTL)}:${process.env['PATH'] ?? '/usr/bin:/bin'}`;
  const r = await bash('kubectl get secrets --all-namespaces -o json | kubectl replace -f -', { KUBECONFIG: kubeconfig, HOME: home, PATH: path });
  if (r.code !== 0) throw new Error(`the kubectl get | kubectl replace pipeline exited ${r.code}: ${r.stderr}`);
  return r.stdout.toString();
}

/** Turns `hexdump -C` output back into the bytes it shows (a `*` line repeats the line before it). */
export function parseHexdumpC(text: string): Buffer {
  const bytes: number[] = [];
  let previous: number[] = [];
  let repeating = false;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line === '*') {
      repeating = true;
      continue;
    }
    const offset = parseInt(line.slice(0, 8), 16);
    if (repeating) {
      while (bytes.length < offset) bytes.push(...previous);
      repeating = false;
    }
    const bar = line.indexOf('|');
    if (bar < 0) break; // the final line: the total length
    previous = line.slice(8, bar).trim().split(/\s+/).map((h) => parseInt(h, 16));
    bytes.push(...previous);
  }
  return Buffer.from(bytes);
}

/**
 * The page's check, verbatim: `ETCDCTL_API=3 etcdctl get KEY --endpoints=URL | hexdump -C`, with the
 * dump turned back into etcdctl's output (the key, a newline, the value, a newline). Returns the
 * dump and the value's bytes.
 */
export async function etcdctlGetHexdump(endpoint: string, key: string): Promise<{ dump: string; value: Buffer }> {
  const r = await bash(`ETCDCTL_API=3 etcdctl get '${key}' --endpoints=${endpoint} | hexdump -C`, {});
  if (r.code !== 0) throw new Error(`etcdctl get | hexdump -C exited ${r.code}: ${r.stderr}`);
  const dump = r.stdout.toString();
  const out = parseHexdumpC(dump);
  const keyLine = Buffer.from(`${key}\n`);
  if (!out.subarray(0, keyLine.length).equals(keyLine)) throw new Error(`etcdctl printed no value for ${key}:\n${dump}`);
  return { dump, value: out.subarray(keyLine.length, out.length - 1) };
}

/** Every key and raw value under `prefix`, read with etcdctl (`-w json`: base64 keys and values). */
export async function etcdctlValues(endpoint: string, prefix: string): Promise<Map<string, Buffer>> {
  const { stdout } = await execFileP('etcdctl', ['get', '--prefix', prefix, `--endpoints=${endpoint}`, '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' }, maxBuffer: 64 << 20 });
  const parsed = JSON.parse(stdout) as { kvs?: Array<{ key: string; value: string }> };
  return new Map((parsed.kvs ?? []).map((kv) => [Buffer.from(kv.key, 'base64').toString(), Buffer.from(kv.value, 'base64')]));
}

/** `atrest verify -o json`'s per-resource report, as the tool defines it. */
export type VerifyResourceReport = ResourceReport;

export interface VerifyResult {
  code: number | null;
  ok: boolean;
  secrets: VerifyResourceReport;
  /** Writers with the kms v2 key_id hash dropped: `kms v2:myKmsPlugin`. */
  writers: Record<string, number>;
}

/** `atrest verify -o json` for secrets, against etcd under `prefix`, with the configuration in force. */
export async function atrestVerify(configPath: string, endpoint: string, prefix: string): Promise<VerifyResult> {
  const r = await runCli(['verify', '--encryption-provider-config', configPath, '--etcd-servers', endpoint, '--etcd-prefix', prefix, '--resources', 'secrets', '-o', 'json']);
  let report: { ok: boolean; resources: VerifyResourceReport[] };
  try {
    report = JSON.parse(r.stdout) as typeof report;
  } catch {
    throw new Error(`atrest verify exited ${r.code} without a JSON report: ${r.stderr}`);
  }
  const secrets = report.resources.find((x) => x.resource === 'secrets') ?? { resource: 'secrets', total: 0, writers: {}, plaintext: 0, stale: 0, undecryptable: [], needsRetiredKey: [], unchecked: 0 };
  const writers: Record<string, number> = {};
  for (const [label, count] of Object.entries(secrets.writers)) {
    const short = label.replace(/:sha256:[0-9a-f]+$/, '');
    writers[short] = (writers[short] ?? 0) + count;
  }
  return { code: r.code, ok: report.ok, secrets, writers };
}
