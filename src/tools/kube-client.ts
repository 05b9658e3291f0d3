// A small client of the Kubernetes API for the operator tools (`atrest rotate`): credentials from a
// kubeconfig as kubectl reads it (current context or a named one; CA and client certificate as data
// or as files relative to the kubeconfig; a bearer token or token file), and JSON requests over
// HTTPS to one or more API servers with the same credentials (each server of an HA control plane,
// not the load balancer in front of them). Nothing here is logged; tokens never reach an error.
import { readFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse } from 'yaml';
import { AtrestError } from '../errors.js';

export class KubeClientError extends AtrestError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KUBE_CLIENT', message, options);
  }
}

export interface KubeCredentials {
  /** The kubeconfig's server URL (the default API server). */
  server: string;
  ca?: Buffer;
  insecureSkipTlsVerify?: boolean;
  token?: string;
  cert?: Buffer;
  key?: Buffer;
}

type Named<T> = Array<{ name?: string } & T>;

function pick<T>(list: Named<T> | undefined, name: string | undefined, what: string, path: string): T {
  const found = (list ?? []).find((e) => e.name === name);
  if (!found) throw new KubeClientError(`kubeconfig ${path}: no ${what} named ${JSON.stringify(name ?? '')}`);
  return found;
}

/** Reads the credentials of `context` (default: current-context) from the kubeconfig at `path`. */
export function loadKubeconfig(path: string, context?: string): KubeCredentials {
  let doc: Record<string, unknown>;
  try {
    doc = parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new KubeClientError(`kubeconfig ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'cannot be read as YAML'}`, { cause: err });
  }
  if (typeof doc !== 'object' || doc === null) throw new KubeClientError(`kubeconfig ${path}: not a kubeconfig`);
  const ctxName = context ?? (doc['current-context'] as string | undefined);
  const ctx = pick(doc['contexts'] as Named<{ context?: { cluster?: string; user?: string } }>, ctxName, 'context', path).context ?? {};
  const cluster = pick(doc['clusters'] as Named<{ cluster?: Record<string, unknown> }>, ctx.cluster, 'cluster', path).cluster ?? {};
  const user = ctx.user === undefined ? {} : (pick(doc['users'] as Named<{ user?: Record<string, unknown> }>, ctx.user, 'user', path).user ?? {});
  const base = dirname(path);
  const file = (p: unknown): Buffer | undefined => (typeof p === 'string' && p !== '' ? readFileSync(isAbsolute(p) ? p : resolve(base, p)) : undefined);
  const data = (d: unknown): Buffer | undefined => (typeof d === 'string' && d !== '' ? Buffer.from(d, 'base64') : undefined);
  const server = cluster['server'];
  if (typeof server !== 'string' || server === '') throw new KubeClientError(`kubeconfig ${path}: cluster ${JSON.stringify(ctx.cluster)} has no server`);
  const token = typeof user['token'] === 'string' ? user['token'] : file(user['tokenFile'])?.toString('utf8').trim();
  const out: KubeCredentials = { server };
  const ca = data(cluster['certificate-authority-data']) ?? file(cluster['certificate-authority']);
  if (ca) out.ca = ca;
  if (cluster['insecure-skip-tls-verify'] === true) out.insecureSkipTlsVerify = true;
  if (token) out.token = token;
  const cert = data(user['client-certificate-data']) ?? file(user['client-certificate']);
  const key = data(user['client-key-data']) ?? file(user['client-key']);
  if (cert && key) {
    out.cert = cert;
    out.key = key;
  }
  return out;
}

export interface KubeResponse {
  status: number;
  text: string;
}

/** One API server reached with the kubeconfig's credentials. */
export class KubeClient {
  private readonly agent: Agent;

  constructor(readonly url: string, private readonly creds: KubeCredentials, private readonly timeoutMs = 30_000) {
    this.agent = new Agent({
      keepAlive: true,
      ...(creds.ca ? { ca: creds.ca } : {}),
      ...(creds.cert && creds.key ? { cert: creds.cert, key: creds.key } : {}),
      rejectUnauthorized: !creds.insecureSkipTlsVerify,
    });
  }

  request(method: string, path: string, body?: unknown): Promise<KubeResponse> {
    const url = new URL(path, this.url.endsWith('/') ? this.url : `${this.url}/`);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { Accept: 'application/json', 'User-Agent': 'atrest-rotate' };
    if (this.creds.token) headers['Authorization'] = `Bearer ${this.creds.token}`;
    if (payload !== undefined) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(payload));
    }
    return new Promise((done, fail) => {
      const req = httpsRequest(url, { method, headers, agent: this.agent, timeout: this.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', fail);
      });
      req.on('timeout', () => req.destroy(new KubeClientError(`${method} ${url.href}: no answer within ${this.timeoutMs} ms`)));
      req.on('error', (err) => fail(err instanceof KubeClientError ? err : new KubeClientError(`${method} ${url.href}: ${err.message}`, { cause: err })));
      req.end(payload);
    });
  }

  /** GET/POST/... expecting JSON; a non-2xx answer throws KubeClientError with the Status message (404 → undefined when `allow404`). */
  async json<T>(method: string, path: string, body?: unknown, allow404 = false): Promise<T | undefined> {
    const r = await this.request(method, path, body);
    if (r.status === 404 && allow404) return undefined;
    if (r.status < 200 || r.status > 299) throw new KubeClientError(`${method} ${this.url}${path}: HTTP ${r.status}: ${statusMessage(r.text)}`);
    return JSON.parse(r.text) as T;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The `message` of a Kubernetes Status body, else the body's first 200 characters. */
export function statusMessage(text: string): string {
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof message === 'string') return message;
  } catch {
    // not JSON
  }
  return text.slice(0, 200);
}
