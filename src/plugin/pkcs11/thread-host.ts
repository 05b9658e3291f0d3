// `--pkcs11-call-mode thread`: the pkcs11 backend (Pkcs11Kek, with every PKCS#11 call synchronous)
// runs on a worker thread of its own, and the plugin's event loop only exchanges messages with it.
//
// Why: the client library of a networked HSM blocks inside a PKCS#11 call while the HSM does not
// answer (p11-kit-client on a frozen p11-kit server waits until it is thawed or killed; vendors' libraries wait for
// their own, often long, timeouts). On the event loop such a call stops everything: Encrypt and
// Decrypt of values under local KEKs held in memory, Status, /healthz, the signal handlers. On this
// thread it stops only the backend, and the key hierarchy's timeouts (--remote-kek-timeout) turn it
// into an outage the plugin serves through.
//
// What the host adds around the thread: currentKeyId/currentKeyCreatedAt, usableKeyIds and wrappedBy
// answer from the last reply (they never wait for the thread); opening is bounded by `timeoutMs` (a plugin started while the
// HSM hangs fails closed); while a call has been running longer than `timeoutMs` new calls fail at
// once with UNAVAILABLE and refreshes share the one already queued, so a long outage queues nothing;
// close() gives the thread `timeoutMs` to close the module. A thread still inside a module call
// cannot be stopped, and Node waits for every thread when the process exits: `stuckPkcs11Threads()`
// tells the plugin to leave without waiting (src/cli/kms-plugin.ts).
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import type { Logger } from '../../log.js';
import { BackendError, type BackendErrorCode, type KekBackend, type WrapResult, type WrappingVersion } from '../backend.js';
import type { Pkcs11Config } from './config.js';
import { keyPlaceOf, Pkcs11Usability, type Pkcs11KeyPlace, type VersionUsability } from './usability.js';

/** What the thread is asked to do. */
export type ThreadRequest =
  | { id: number; op: 'encrypt' | 'decrypt'; data: Uint8Array }
  | { id: number; op: 'refresh' | 'close' };

/**
 * The current key version as the thread last saw it; with the replies to the open and to a refresh
 * also every version's usability (retired or not).
 */
export interface ThreadKeyState { keyId: string; createdAt: number | undefined; versions?: VersionUsability[] }

/** What the thread says: it runs (before opening), a reply to a request (id; 0: the open), a log line. */
export type ThreadMessage =
  | { t: 'ready' }
  | { t: 'reply'; id: number; ok: true; data?: Uint8Array; keyId?: string; key: ThreadKeyState }
  | { t: 'reply'; id: number; ok: false; error: { code: string; message: string } }
  | { t: 'log'; line: string };

export interface ThreadInit { config: Pkcs11Config }

/** How long the thread may take to start running (before the open's own bound applies). */
const THREAD_START_MS = 30_000;

/**
 * Threads whose backend was closed but which have not ended yet (a module call that did not return,
 * or a terminate still under way): the process cannot exit normally while one runs. A thread leaves
 * the set only on its 'exit' event, so no race between close() and terminate() can hide one.
 */
const stuck = new Set<Worker>();

/** How many pkcs11 backend threads are still running after their backend closed. */
export function stuckPkcs11Threads(): number {
  return stuck.size;
}

/** Starts thread-worker.js; from source (this file is .ts, run by tsx) thread-worker.ts through tsx. */
function startWorker(init: ThreadInit): Worker {
  const options = { workerData: init, stdout: false, stderr: false };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./thread-worker.js', import.meta.url), options);
  // tsx's loader hooks (node --import tsx) are not installed in new threads: install them first.
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./thread-worker.ts', import.meta.url).href;
  return new Worker(`import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry)}); })`, { ...options, eval: true });
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

interface Pending {
  resolve: (m: Extract<ThreadMessage, { ok: true }>) => void;
  reject: (e: Error) => void;
  startedAt: number;
}

export class ThreadedPkcs11Kek implements KekBackend {
  readonly kind = 'pkcs11';
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private key: ThreadKeyState = { keyId: '', createdAt: undefined };
  private usability: Pkcs11Usability;
  private refreshing: Promise<void> | undefined;
  private exited: Error | undefined;
  private closing: Promise<void> | undefined;
  private onReady: (() => void) | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly where: string,
    private readonly timeoutMs: number,
    /** Where the key lives: what a refusal of a retired version names (restore-key's flags). */
    private readonly place: Pkcs11KeyPlace,
    private readonly now: () => number = Date.now,
  ) {
    this.usability = new Pkcs11Usability([], place);
  }

  /**
   * Starts the thread and opens the backend in it (module, sessions, login, key versions). Fails
   * closed with UNAVAILABLE when that takes longer than `timeoutMs` (the HSM does not answer).
   */
  static async open(config: Pkcs11Config, log: Logger, timeoutMs: number, start: (init: ThreadInit) => Worker = startWorker): Promise<ThreadedPkcs11Kek> {
    const init: ThreadInit = { config: { ...config, callMode: 'sync' } };
    // `start`: tests put a thread of their own here to make it hang on demand.
    const worker = start(init);
    const where = `token ${JSON.stringify(config.tokenLabel)} (PKCS#11 module ${config.modulePath})`;
    const kek = new ThreadedPkcs11Kek(worker, where, timeoutMs, keyPlaceOf(config));
    worker.on('message', (m: ThreadMessage) => kek.onMessage(m, log));
    worker.on('error', (err) => kek.onExit(new BackendError('INTERNAL', `the pkcs11 backend thread failed: ${err.message}`, { cause: err })));
    worker.on('exit', (code) => {
      stuck.delete(worker);
      kek.onExit(new BackendError('UNAVAILABLE', `the pkcs11 backend thread ended (exit code ${code})`));
    });
    // Request 0 is the open the thread starts by itself. The bound starts once the thread runs
    // (starting it, from source with tsx, takes a while on a loaded machine and is not the HSM's).
    const opened = kek.expect(0);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_resolve, reject) => {
      const fail = (): void => reject(new BackendError('UNAVAILABLE', `${where} did not answer within ${timeoutMs} ms while opening (C_Initialize, C_OpenSession, C_Login, C_FindObjects): is the HSM reachable?`));
      kek.onReady = () => { clearTimeout(timer); timer = setTimeout(fail, timeoutMs); };
      timer = setTimeout(fail, Math.max(timeoutMs, THREAD_START_MS));
    });
    try {
      await Promise.race([opened, deadline]);
      return kek;
    } catch (err) {
      await kek.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async currentKeyId(): Promise<string> {
    return this.key.keyId;
  }

  async currentKeyCreatedAt(): Promise<number | undefined> {
    return this.key.createdAt;
  }

  usableKeyIds(): ReadonlySet<string> {
    return this.usability.usableKeyIds;
  }

  wrappedBy(ciphertext: Uint8Array): WrappingVersion | undefined {
    return this.usability.wrappedBy(ciphertext);
  }

  async encrypt(plaintext: Uint8Array): Promise<WrapResult> {
    const reply = await this.call({ id: 0, op: 'encrypt', data: plaintext });
    return { ciphertext: asBuffer(reply.data ?? new Uint8Array()), keyId: reply.keyId ?? '' };
  }

  async decrypt(ciphertext: Uint8Array): Promise<Buffer> {
    const reply = await this.call({ id: 0, op: 'decrypt', data: ciphertext });
    return asBuffer(reply.data ?? new Uint8Array());
  }

  /** Concurrent refreshes (and those of a long outage) share the one in the thread's queue. */
  refresh(): Promise<void> {
    this.refreshing ??= this.call({ id: 0, op: 'refresh' }).then(() => undefined).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    // Counted until the thread's 'exit' event (see `stuck`).
    if (!this.exited) stuck.add(this.worker);
    if (!this.exited) {
      const id = this.nextId++;
      const closed = this.expect(id).then(() => true, () => true);
      this.worker.postMessage({ id, op: 'close' } satisfies ThreadRequest);
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([closed, new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), this.timeoutMs); })]);
      clearTimeout(timer);
      if (!done) {
        // Still inside a module call: it cannot be interrupted. Let the process exit around it.
        this.worker.unref();
        this.onExit(new BackendError('UNAVAILABLE', `the pkcs11 backend is closed (${this.where} had not returned from a call)`));
        void this.worker.terminate().catch(() => undefined);
        return;
      }
    }
    this.onExit(new BackendError('UNAVAILABLE', 'the pkcs11 backend is closed'));
    await this.worker.terminate().catch(() => undefined);
  }

  private call(request: ThreadRequest): Promise<Extract<ThreadMessage, { ok: true }>> {
    if (this.exited) return Promise.reject(this.exited);
    const oldest = this.oldestPending();
    if (oldest !== undefined && this.now() - oldest > this.timeoutMs) {
      return Promise.reject(new BackendError('UNAVAILABLE', `${this.where} has not returned from a call for ${Math.round((this.now() - oldest) / 1000)} s: the HSM does not answer`));
    }
    const id = this.nextId++;
    const reply = this.expect(id);
    if ('data' in request) {
      // Only these bytes travel (cloning a view would carry its whole ArrayBuffer); the copy is
      // wiped once cloned, the thread wipes its own.
      const data = new Uint8Array(request.data);
      this.worker.postMessage({ ...request, id, data } satisfies ThreadRequest);
      data.fill(0);
    } else {
      this.worker.postMessage({ ...request, id } satisfies ThreadRequest);
    }
    return reply;
  }

  private expect(id: number): Promise<Extract<ThreadMessage, { ok: true }>> {
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, startedAt: this.now() }));
  }

  private oldestPending(): number | undefined {
    // Map iteration follows insertion order: the first entry is the oldest call.
    for (const p of this.pending.values()) return p.startedAt;
    return undefined;
  }

  private onMessage(m: ThreadMessage, log: Logger): void {
    if (m.t === 'ready') {
      this.onReady?.();
      return;
    }
    if (m.t === 'log') {
      relayLog(log, m.line);
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.ok) {
      this.key = m.key;
      if (m.key.versions) this.usability = new Pkcs11Usability(m.key.versions, this.place);
      p.resolve(m);
    } else {
      p.reject(new BackendError(m.error.code as BackendErrorCode, m.error.message));
    }
  }

  private onExit(err: Error): void {
    this.exited ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/** Writes a JSON log line made on the thread through the plugin's logger (same level and fields). */
function relayLog(log: Logger, line: string): void {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return;
  }
  const { level, msg, time: _time, pid: _pid, hostname: _host, ...fields } = rec;
  const name = typeof level === 'number' ? pino.levels.labels[level] : undefined;
  const write = name === 'fatal' || name === 'error' || name === 'warn' || name === 'debug' || name === 'trace' ? log[name] : log.info;
  write.call(log, fields, typeof msg === 'string' ? msg : '');
}
