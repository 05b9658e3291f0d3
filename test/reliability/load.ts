// Shared pieces of the reliability tests: a write/read load of a few concurrent HTTPS clients
// against `atrest serve` that remembers every acknowledged write, the final check that each of them
// is readable with its latest value, a raw scan of stored values, and the `RELIABILITY {json}` line.
import { apiRequest, type HttpResult } from '../helpers/server.js';
import type { RunningApiServer } from '../../src/api/index.js';

export const NS = 'default';
const SECRETS = `/api/v1/namespaces/${NS}/secrets`;

export function secretBody(name: string, value: string): string {
  return JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, data: { v: Buffer.from(value).toString('base64') } });
}

export function valueOf(r: HttpResult): string {
  const data = r.json<{ data?: Record<string, string> }>().data ?? {};
  return Buffer.from(data['v'] ?? '', 'base64').toString();
}

/** One JSON line for RELIABILITY.md. */
export function report(section: string, figures: Record<string, unknown>): void {
  console.log(`RELIABILITY ${JSON.stringify({ section, ...figures })}`);
}

/** Per object: every value attempted after the last acknowledged one, and that one. */
interface Track {
  acked?: string;
  pending: string[];
}

export interface LoadOptions {
  /** The servers to spread requests over (round robin per request). */
  servers: RunningApiServer[];
  workers: number;
  /** Objects each worker owns and rewrites (it creates them first). */
  objectsPerWorker: number;
  /** Existing objects read back (name → value), e.g. written before a fault. */
  readTargets?: Map<string, string>;
  /** Name prefix (unique per run). */
  prefix: string;
  /** Pause between operations of one worker (ms). */
  pauseMs?: number;
  /** The worker's objects exist already (seeded): update them from the start. */
  objectsExist?: boolean;
}

export interface LoadEvent {
  at: number;
  kind: 'write' | 'read';
  ok: boolean;
  status: number;
  message?: string;
  /** The URL of the server the request went to. */
  server?: string;
}

/**
 * Runs until stop(): each worker creates its objects, then alternates between updating one of them
 * (PUT, a new value `<name>#<n>`) and reading a read target. Every request's outcome is recorded.
 */
export class WriteReadLoad {
  readonly tracks = new Map<string, Track>();
  readonly events: LoadEvent[] = [];
  private running = true;
  private readonly done: Promise<void[]>;
  private requestNo = 0;

  constructor(private readonly o: LoadOptions) {
    this.done = Promise.all(Array.from({ length: o.workers }, (_, w) => this.worker(w)));
  }

  private server(): RunningApiServer {
    return this.o.servers[this.requestNo++ % this.o.servers.length] as RunningApiServer;
  }

  private async write(name: string, n: number, create: boolean): Promise<void> {
    const track = this.tracks.get(name) ?? { pending: [] };
    this.tracks.set(name, track);
    const value = `${name}#${n}`;
    track.pending.push(value);
    let r: HttpResult | undefined;
    let message: string | undefined;
    const server = this.server();
    try {
      r = create
        ? await apiRequest(server, 'POST', SECRETS, { body: secretBody(name, value) })
        : await apiRequest(server, 'PUT', `${SECRETS}/${name}`, { body: secretBody(name, value) });
    } catch (err) {
      message = String(err);
    }
    const ok = r !== undefined && (r.status === 200 || r.status === 201);
    if (ok) {
      track.acked = value;
      track.pending = [];
    } else if (r) {
      message = r.text.slice(0, 300);
    }
    this.events.push({ at: Date.now(), kind: 'write', ok, status: r?.status ?? 0, server: server.url, ...(message ? { message } : {}) });
  }

  private async read(): Promise<void> {
    const targets = [...(this.o.readTargets ?? new Map<string, string>())];
    if (targets.length === 0) return;
    const [name, want] = targets[Math.floor(Math.random() * targets.length)] as [string, string];
    let r: HttpResult | undefined;
    let message: string | undefined;
    const server = this.server();
    try {
      r = await apiRequest(server, 'GET', `${SECRETS}/${name}`);
    } catch (err) {
      message = String(err);
    }
    const ok = r !== undefined && r.status === 200 && valueOf(r) === want;
    if (!ok && r) message = r.status === 200 ? 'wrong value' : r.text.slice(0, 300);
    this.events.push({ at: Date.now(), kind: 'read', ok, status: r?.status ?? 0, server: server.url, ...(message ? { message } : {}) });
  }

  private async worker(w: number): Promise<void> {
    const names = Array.from({ length: this.o.objectsPerWorker }, (_, i) => `${this.o.prefix}-w${w}-${i}`);
    const created = new Set<string>(this.o.objectsExist ? names : []);
    let n = 0;
    while (this.running) {
      const name = names[n % names.length] as string;
      // Create until acknowledged (a failed create may still have happened: then PUT works).
      await this.write(name, n, !created.has(name));
      if (this.tracks.get(name)?.acked !== undefined) created.add(name);
      else if (this.events.at(-1)?.status === 409) created.add(name);
      n++;
      await this.read();
      if (this.o.pauseMs) await new Promise((r) => setTimeout(r, this.o.pauseMs));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }

  /** Acknowledged writes so far. */
  get acked(): number {
    return this.events.filter((e) => e.kind === 'write' && e.ok).length;
  }

  /**
   * Reads every object back through `server`: lost = an object with an acknowledged write whose
   * value is neither that write nor a later attempted one.
   */
  async verify(server: RunningApiServer): Promise<{ checked: number; lost: string[] }> {
    const lost: string[] = [];
    let checked = 0;
    for (const [name, t] of this.tracks) {
      if (t.acked === undefined) continue;
      checked++;
      const r = await apiRequest(server, 'GET', `${SECRETS}/${name}`);
      const got = r.status === 200 ? valueOf(r) : `HTTP ${r.status}`;
      if (got !== t.acked && !t.pending.includes(got)) lost.push(`${name}: acked ${t.acked}, got ${got}`);
    }
    return { checked, lost };
  }
}

/** Seeds `count` secrets through the API; returns name → value. */
export async function seed(server: RunningApiServer, prefix: string, count: number): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    const name = `${prefix}-${i}`;
    const value = `seeded ${name}`;
    const r = await apiRequest(server, 'POST', SECRETS, { body: secretBody(name, value) });
    if (r.status !== 201) throw new Error(`seeding ${name}: ${r.status} ${r.text}`);
    out.set(name, value);
  }
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** mulberry32: a small seeded PRNG so a failing run can be replayed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
