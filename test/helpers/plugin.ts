// Test helpers for the KMS plugin (src/plugin): run `atrest kms-plugin` from source as a child
// process (node --import tsx src/cli/run.ts), watch its JSON log lines, and talk to its socket with
// a plain @grpc/grpc-js client that surfaces gRPC status codes.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import * as v1 from '../../src/gen/v1beta1/api_pb.js';
import * as v2 from '../../src/gen/v2/api_pb.js';
import { captureLog, keyFileArg, registerKeyFile } from './test-log.js';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const cliSource = fileURLToPath(new URL('../../src/cli/run.ts', import.meta.url));

export async function makeTempDir(prefix = 'atrest-plugin-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `atrest <args>` from source, to completion. */
export function runAtrest(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', cliSource, ...args], {
      cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    captureLog(`atrest-${args[0] ?? 'cli'}`, child.stderr);
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      const keyFile = keyFileArg(args);
      if (keyFile) registerKeyFile(keyFile);
      resolve({ code, stdout, stderr });
    });
  });
}

export type LogLine = Record<string, unknown> & { event?: string; msg?: string };

/** A running `atrest kms-plugin` child process. */
export class PluginProcess {
  readonly logs: LogLine[] = [];
  /** Every stderr line, JSON or not. */
  readonly stderrLines: string[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiters: Array<() => void> = [];

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, ['--import', 'tsx', cliSource, 'kms-plugin', ...args], {
      cwd: repoRoot, env: { ...process.env, ATREST_LOG_LEVEL: 'info', ...env }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => { this.notify(); resolve(code); }));
    this.child.stdout.resume();
    captureLog('kms-plugin', this.child.stderr);
    const keyFile = keyFileArg(args);
    if (keyFile) registerKeyFile(keyFile);
    createInterface({ input: this.child.stderr }).on('line', (line) => {
      this.stderrLines.push(line);
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        // not JSON (e.g. the final `atrest: ...` line)
      }
      this.notify();
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get exitCode(): number | null {
    return this.child.exitCode;
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits (bounded) for a log line with this `event`; rejects if the process exits first. */
  async waitForEvent(event: string, timeoutMs = 20_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.logs.find((l) => l.event === event);
      if (found) return found;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`kms-plugin exited (${this.child.exitCode ?? this.child.signalCode}) before "${event}":\n${this.stderrLines.join('\n')}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${event}" log line within ${timeoutMs} ms:\n${this.stderrLines.join('\n')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 500));
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. Resolves to the exit code. */
  async stop(graceMs = 10_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Polls `condition` until it holds (bounded); no timing assertions. */
export async function waitFor<T>(what: string, condition: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000, stepMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** A test client for the plugin socket; rejections are grpc ServiceErrors (with `.code`). */
export class TestKmsClient {
  private readonly client: grpc.Client;

  /** @param target a grpc-js target: `unix:/path` or `unix:\0name` */
  constructor(target: string, private readonly timeoutMs = 5000) {
    this.client = new grpc.Client(target, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'localhost' });
  }

  static forPath(path: string): TestKmsClient {
    return new TestKmsClient(`unix:${path}`);
  }

  static forAbstract(name: string): TestKmsClient {
    return new TestKmsClient(`unix:\0${name}`);
  }

  call<I extends DescMessage, O extends DescMessage>(path: string, input: I, output: O, init: Partial<MessageShape<I>> = {}): Promise<MessageShape<O>> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest<MessageShape<I>, MessageShape<O>>(
        path, (m) => Buffer.from(toBinary(input, m)), (b) => fromBinary(output, b),
        create(input, init as never), new grpc.Metadata({ waitForReady: true }), { deadline: Date.now() + this.timeoutMs },
        (err, res) => (err || !res ? reject(err ?? new Error('no response')) : resolve(res)),
      );
    });
  }

  version(version = 'v1beta1'): Promise<v1.VersionResponse> {
    return this.call('/v1beta1.KeyManagementService/Version', v1.VersionRequestSchema, v1.VersionResponseSchema, { version });
  }

  v1Encrypt(plain: Uint8Array, version = 'v1beta1'): Promise<v1.EncryptResponse> {
    return this.call('/v1beta1.KeyManagementService/Encrypt', v1.EncryptRequestSchema, v1.EncryptResponseSchema, { version, plain });
  }

  v1Decrypt(cipher: Uint8Array, version = 'v1beta1'): Promise<v1.DecryptResponse> {
    return this.call('/v1beta1.KeyManagementService/Decrypt', v1.DecryptRequestSchema, v1.DecryptResponseSchema, { version, cipher });
  }

  status(service = 'v2'): Promise<v2.StatusResponse> {
    return this.call(`/${service}.KeyManagementService/Status`, v2.StatusRequestSchema, v2.StatusResponseSchema);
  }

  encrypt(plaintext: Uint8Array, service = 'v2'): Promise<v2.EncryptResponse> {
    return this.call(`/${service}.KeyManagementService/Encrypt`, v2.EncryptRequestSchema, v2.EncryptResponseSchema, { plaintext, uid: crypto.randomUUID() });
  }

  /** `annotations`: what Encrypt returned with the ciphertext (kube-apiserver stores and sends them back). */
  decrypt(ciphertext: Uint8Array, keyId: string, service = 'v2', annotations: Record<string, Uint8Array> = {}): Promise<v2.DecryptResponse> {
    return this.call(`/${service}.KeyManagementService/Decrypt`, v2.DecryptRequestSchema, v2.DecryptResponseSchema, { ciphertext, keyId, uid: crypto.randomUUID(), annotations });
  }

  close(): void {
    this.client.close();
  }
}

/** The gRPC status code of a rejection (or undefined). */
export function grpcCodeOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? (err as { code: number }).code : undefined;
}
