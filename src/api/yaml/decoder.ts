// YAML request bodies are decoded off the event loop. The yaml library is slow on wide documents
// (~150k nodes/s: 3 MB of `[1,1,…]` took 15 s and 1.3 GB here) and recursive on deep ones (a
// `[[[[…` of 100 KB overflowed the stack and took `atrest serve` down), so one hostile body could
// stall or kill the server for everyone. Here it runs in a worker thread whose heap, stack and
// running time are bounded: a body past a bound gets a 4xx naming it, the worker is replaced, and
// every other request is served meanwhile. One worker, requests queued behind it (a bounded queue:
// beyond it, 429). JSON needs none of this: JSON.parse is native, iterative and fast.
import { Worker, type WorkerOptions } from 'node:worker_threads';
import type { Logger } from '../../log.js';
import { ApiError, badRequest } from '../errors.js';
import type { Json } from '../objects.js';
import type { YamlDecodeLimits } from './decode.js';
import type { DecodeReply, DecodeRequest } from './worker.js';

export interface YamlDecoderOptions {
  /** Nesting depth (MAX_NESTING_DEPTH). */
  maxDepth: number;
  /** Alias nodes in one document (default 1000). */
  maxAliases?: number;
  /** The decoded document's JSON text, in characters (default: twice the body limit). */
  maxJsonChars: number;
  /** Running time of one decode (default 10 s). */
  timeoutMs?: number;
  /** The worker's old-generation heap (default 256 MiB). */
  maxHeapMb?: number;
  /** Bodies waiting behind the one being decoded (default 16); more get 429. */
  maxQueue?: number;
  log?: Logger;
}

export const DEFAULT_YAML_TIMEOUT_MS = 10_000;
export const DEFAULT_YAML_HEAP_MB = 256;
const DEFAULT_MAX_ALIASES = 1000;
const DEFAULT_MAX_QUEUE = 16;
/** Enough stack for the library's recursion at MAX_NESTING_DEPTH (it needs ~2.5 KB a level) many times over. */
const WORKER_STACK_MB = 16;
const RETRY_AFTER_SECONDS = 1;
/** A worker that has not loaded its code by then is given up on (the body gets a 500). */
const WORKER_STARTUP_MS = 30_000;

interface Job {
  id: number;
  text: string;
  resolve: (v: Json) => void;
  reject: (err: Error) => void;
}

const decodeFailed = (reason: string): ApiError => badRequest(`the body of the request could not be decoded as YAML: ${reason}`);
const tooComplex = (why: string): ApiError =>
  new ApiError(413, 'RequestEntityTooLarge', `Request entity too large: ${why}; send the object as JSON instead`);

/**
 * The worker: the built worker.js next to this file; when running from source under tsx (tests),
 * worker.ts behind a one-line bootstrap that registers tsx in the thread first (node 20 does not
 * carry `--import` loader hooks into workers).
 */
function startWorker(options: WorkerOptions): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./worker.js', import.meta.url), options);
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./worker.ts', import.meta.url).href;
  const bootstrap = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

export class YamlDecoder {
  private readonly limits: YamlDecodeLimits;
  private readonly timeoutMs: number;
  private readonly maxHeapMb: number;
  private readonly maxQueue: number;
  private readonly log: Logger | undefined;
  private worker: Worker | undefined;
  /** The current worker has loaded its code (its `ready` message came): a job's time runs from then. */
  private workerReady = false;
  private running: { job: Job; timer: NodeJS.Timeout | undefined } | undefined;
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;

  constructor(options: YamlDecoderOptions) {
    this.limits = { maxDepth: options.maxDepth, maxAliases: options.maxAliases ?? DEFAULT_MAX_ALIASES, maxJsonChars: options.maxJsonChars };
    this.timeoutMs = options.timeoutMs ?? DEFAULT_YAML_TIMEOUT_MS;
    this.maxHeapMb = options.maxHeapMb ?? DEFAULT_YAML_HEAP_MB;
    this.maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
    this.log = options.log;
  }

  /** The decoded document; rejects with an ApiError (400 syntax/depth/aliases, 413 too costly, 429 queue full). */
  decode(text: string): Promise<Json> {
    if (this.closed) return Promise.reject(new ApiError(503, 'ServiceUnavailable', 'the server is shutting down'));
    if (this.queue.length >= this.maxQueue) {
      return Promise.reject(new ApiError(429, 'TooManyRequests',
        `Too many requests, please try again later: ${this.maxQueue} YAML bodies are already waiting to be decoded`, { retryAfterSeconds: RETRY_AFTER_SECONDS }));
    }
    return new Promise<Json>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, text, resolve, reject });
      this.pump();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const stopping = new ApiError(503, 'ServiceUnavailable', 'the server is shutting down');
    for (const job of this.queue.splice(0)) job.reject(stopping);
    if (this.running) this.finish(this.running.job.id, () => stopping);
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }

  private pump(): void {
    if (this.running || this.closed) return;
    const job = this.queue.shift();
    if (!job) return;
    this.running = { job, timer: undefined };
    const w = this.ensureWorker();
    w.postMessage({ id: job.id, text: job.text, limits: this.limits } satisfies DecodeRequest);
    // A fresh worker's start-up (loading the yaml library) is not the body's time.
    if (this.workerReady) this.startTimer();
  }

  private startTimer(): void {
    const running = this.running;
    if (!running || running.timer) return;
    const id = running.job.id;
    running.timer = setTimeout(() => this.fail(id, tooComplex(`the YAML body could not be decoded within ${this.timeoutMs / 1000}s`), 'timeout'), this.timeoutMs);
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const w = startWorker({
      resourceLimits: { maxOldGenerationSizeMb: this.maxHeapMb, stackSizeMb: WORKER_STACK_MB },
    });
    // The worker must not keep a process (a test, a CLI command) alive on its own.
    w.unref();
    this.workerReady = false;
    const startup = setTimeout(() => {
      const id = this.running?.job.id;
      if (this.worker === w && !this.workerReady && id !== undefined) this.fail(id, new Error(`the YAML decoder worker did not start within ${WORKER_STARTUP_MS / 1000}s`), 'worker start-up');
    }, WORKER_STARTUP_MS);
    startup.unref();
    w.on('message', (reply: DecodeReply | 'ready') => {
      if (reply !== 'ready') return this.onReply(reply);
      if (this.worker !== w) return;
      this.workerReady = true;
      this.startTimer();
    });
    // Events of a worker already replaced (stopped by fail()) are about nothing running now.
    w.on('error', (err: Error & { code?: string }) => {
      const id = this.running?.job.id;
      if (this.worker !== w || id === undefined) return;
      if (err.code === 'ERR_WORKER_OUT_OF_MEMORY') this.fail(id, tooComplex(`decoding the YAML body needs more than ${this.maxHeapMb} MiB of memory`), 'out of memory');
      else this.fail(id, err, 'worker error');
    });
    w.on('exit', () => {
      if (this.worker !== w) return;
      const id = this.running?.job.id;
      if (id !== undefined) this.fail(id, new Error('the YAML decoder worker exited'), 'worker exited');
      this.worker = undefined;
    });
    this.worker = w;
    return w;
  }

  private onReply(reply: DecodeReply): void {
    this.finish(reply.id, () => {
      const r = reply.result;
      if (r.ok) return JSON.parse(r.json) as Json;
      if (r.kind === 'large') return tooComplex(r.reason.replace(/^the document/, 'the YAML document'));
      return decodeFailed(r.reason);
    });
  }

  /** A decode that must not continue: the worker is stopped (a new one starts for the next body). */
  private fail(id: number, err: Error, why: string): void {
    if (this.running?.job.id !== id) return;
    this.log?.warn({ bytes: this.running.job.text.length, reason: why }, 'a YAML request body was refused');
    const w = this.worker;
    this.worker = undefined;
    if (w) void w.terminate();
    this.finish(id, () => err);
  }

  private finish(id: number, outcome: () => Json | Error): void {
    const running = this.running;
    if (running?.job.id !== id) return;
    clearTimeout(running.timer);
    this.running = undefined;
    let value: Json | Error;
    try {
      value = outcome();
    } catch (err) {
      value = err instanceof Error ? err : new Error(String(err));
    }
    if (value instanceof Error) running.job.reject(value);
    else running.job.resolve(value);
    this.pump();
  }
}
