// Runs `atrest serve` in-process (startApiServer) for tests: a temporary data dir, a free port,
// silent logs; plus a small HTTPS client that trusts the server's CA and sends its token.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApiServer, type ApiServerOptions, type RunningApiServer } from '../../src/api/index.js';
import { inProcessLogger, registerTestSecret } from './test-log.js';

export interface TestServer {
  server: RunningApiServer;
  dir: string;
  dataDir: string;
  close(): Promise<void>;
}

export async function startTestServer(options: ApiServerOptions = {}, dir = mkdtempSync(join(tmpdir(), 'atrest-api-'))): Promise<TestServer> {
  const dataDir = options.dataDir ?? join(dir, 'data');
  const server = await startApiServer({ log: inProcessLogger('api-server'), securePort: 0, ...options, dataDir });
  return {
    server,
    dir,
    dataDir,
    close: async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An EncryptionConfiguration with aesgcm for secrets and configmaps (identity readable as fallback). Returns its path. */
export function writeAesGcmConfig(dir: string, name = 'key1', file = 'encryption.yaml', extraKeys: Array<{ name: string; secret: string }> = []): { path: string; secret: string } {
  const secret = randomBytes(32).toString('base64');
  registerTestSecret(Buffer.from(secret, 'base64'), 'aesgcm-key');
  const keys = [{ name, secret }, ...extraKeys].map((k) => `            - name: ${k.name}\n              secret: ${k.secret}`).join('\n');
  const path = join(dir, file);
  writeFileSync(path, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
      - aesgcm:
          keys:
${keys}
      - identity: {}
`);
  return { path, secret };
}

/** The provider line of a kms v2 provider `atrest` on the plugin socket `socket`. */
export function kmsV2ProviderLine(socket: string): string {
  return `      - kms: { apiVersion: v2, name: atrest, endpoint: "unix://${socket}", timeout: 3s }`;
}

/**
 * A client of an `atrest serve` process at `url` (the tests' apiRequest takes a RunningApiServer):
 * the first token of its generated tokens.csv and its CA, from its data directory.
 */
export function serveClient(url: string, dataDir: string): RunningApiServer {
  return {
    url,
    token: readFileSync(join(dataDir, 'tokens.csv'), 'utf8').split(',')[0] as string,
    caPem: readFileSync(join(dataDir, 'ca.crt'), 'utf8'),
  } as RunningApiServer;
}

/** An EncryptionConfiguration: secrets with kms v2 `atrest` on `socket` (then identity), configmaps unencrypted. */
export function writeKmsV2Config(dir: string, socket: string, file = 'encryption.yaml'): string {
  const path = join(dir, file);
  writeFileSync(path, `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
${kmsV2ProviderLine(socket)}
      - identity: {}
  - resources: [configmaps]
    providers:
      - identity: {}
`);
  return path;
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
  json<T = Record<string, unknown>>(): T;
}

export function apiRequest(
  server: RunningApiServer,
  method: string,
  path: string,
  /**
   * `agent: false`: a connection of its own. Node 20's server resets a keep-alive connection when the
   * next request arrives while a large response is still being flushed ("Parse Error: Paused"), so
   * tests that send large bodies back to back use fresh connections.
   */
  options: { body?: string | Buffer; headers?: Record<string, string>; token?: string | null; agent?: false } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, server.url);
    const headers: Record<string, string> = { Accept: 'application/json', ...options.headers };
    const token = options.token === undefined ? server.token : options.token;
    if (token !== null) headers['Authorization'] = `Bearer ${token}`;
    if (options.body !== undefined) {
      headers['Content-Type'] ??= 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(options.body));
    }
    const req = httpsRequest(url, { method, headers, ca: server.caPem, ...(options.agent === false ? { agent: false } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const text = body.toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text, json: <T>() => JSON.parse(text) as T });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

export interface WatchEventLine {
  type: string;
  object: { kind?: string; metadata: Record<string, unknown>; [k: string]: unknown };
}

/**
 * Opens a watch (`path` with `watch=true`) and resolves with the first `count` events; `ready`
 * resolves once the response headers arrived (the server has registered the watch by then).
 */
export function watchEvents(server: RunningApiServer, path: string, count: number): { ready: Promise<void>; events: Promise<WatchEventLine[]> } {
  let markReady: () => void = () => {};
  const ready = new Promise<void>((r) => { markReady = r; });
  const events = new Promise<WatchEventLine[]>((resolve, reject) => {
    const got: WatchEventLine[] = [];
    let buffered = '';
    const req = httpsRequest(new URL(path, server.url), { headers: { Authorization: `Bearer ${server.token}` }, ca: server.caPem }, (res) => {
      markReady();
      if (res.statusCode !== 200) {
        let body = '';
        res.on('data', (c: Buffer) => { body += c.toString(); });
        res.on('end', () => reject(new Error(`watch failed with ${res.statusCode}: ${body}`)));
        return;
      }
      res.on('data', (c: Buffer) => {
        buffered += c.toString();
        let nl;
        while ((nl = buffered.indexOf('\n')) >= 0 && got.length < count) {
          got.push(JSON.parse(buffered.slice(0, nl)) as WatchEventLine);
          buffered = buffered.slice(nl + 1);
        }
        if (got.length >= count) {
          req.destroy();
          resolve(got);
        }
      });
      res.on('end', () => (got.length >= count ? resolve(got) : reject(new Error(`watch ended after ${got.length} of ${count} events`))));
    });
    req.on('error', (e) => (got.length >= count ? resolve(got) : reject(e)));
    req.end();
  });
  return { ready, events };
}
