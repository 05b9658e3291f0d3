// The HTTP side: one request listener for the node:https server. Per request: route, authenticate
// (a bearer token; /healthz, /livez, /readyz and /version are open like kube's public-info paths),
// read the body within the size limit (413 beyond), dispatch, encode the reply, count it in the
// request metrics. Every failure is turned into a Status by statusFromError (status.ts).
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HealthCheck } from '../health.js';
import type { Logger } from '../log.js';
import type { Registry } from '../metrics.js';
import { aggregatedCore, aggregatedGroups, AGGREGATED_CONTENT_TYPE, apiGroupList, apiGroupOf, apiResourceList, legacyApiVersions, wantsAggregated } from './discovery.js';
import type { TokenAuthenticator } from './auth.js';
import { DEFAULT_MAX_BODY_BYTES } from './body-limits.js';
import { ApiError, badRequest, methodNotAllowed, pathNotFound, tooLarge, tooManyRequests, unauthorized } from './errors.js';
import { logCheck, pingCheck, runHealth } from './health-endpoints.js';
import { OPENAPI_V2_CONTENT_TYPE } from './openapi.js';
import type { RequestMetrics } from './request-metrics.js';
import { StreamedBody } from './list-handler.js';
import type { Reply, ResourceHandlers, ResourceRequest } from './resource-handlers.js';
import { isPublicRoute, route, type Route } from './router.js';
import { statusFromError, type Status } from './status.js';
import { versionInfo } from './version.js';
import { warningHeaders } from './warning-header.js';
import { isWatchRequest, serveWatch, type WatchDeps } from './watch.js';
import { InflightLimiter, isMutatingMethod, RETRY_AFTER_SECONDS, type InflightLimits } from './inflight-limit.js';

export { DEFAULT_MAX_BODY_BYTES } from './body-limits.js';

export interface RequestListenerDeps {
  handlers: ResourceHandlers;
  watch: Omit<WatchDeps, 'handlers'>;
  authenticator: TokenAuthenticator;
  metrics: RequestMetrics;
  registry: Registry;
  log: Logger;
  etcdPrefix: string;
  /** The store check (`etcd`). */
  storeCheck: HealthCheck;
  /** Whether the store can write (`storage-writable`; /healthz and /readyz, not /livez). */
  storeWritableCheck?: HealthCheck;
  /** The current KMS checks (they change on reload). */
  kmsChecks(): HealthCheck[];
  maxBodyBytes?: number;
  /** --max-requests-inflight / --max-mutating-requests-inflight (absent: no limit). */
  inflight?: InflightLimits;
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > limit) return Promise.reject(new BodyTooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.pause();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function wantsTable(accept: string | undefined): boolean {
  return (accept ?? '').split(',').some((alt) => {
    const params = new Map(alt.split(';').slice(1).map((p) => p.trim().split('=') as [string, string]));
    return params.get('as') === 'Table' && params.get('g') === 'meta.k8s.io' && params.get('v') === 'v1';
  });
}

/** `fieldManager`, else the User-Agent up to its first `/` (kube's default), at most 128 characters. */
function fieldManagerOf(query: URLSearchParams, userAgent: string | undefined): string {
  const explicit = query.get('fieldManager');
  if (explicit !== null && explicit !== '') {
    if (explicit.length > 128) throw badRequest(`fieldManager: Too long: may not be more than 128 bytes`);
    return explicit;
  }
  return (userAgent ?? 'unknown').split('/')[0]?.slice(0, 128) || 'unknown';
}

function verbOf(r: Route, method: string, query: URLSearchParams, contentType: string | undefined): string {
  if (r.kind !== 'resource') return method;
  if (method === 'GET') return isWatchRequest(query) ? 'WATCH' : r.name === undefined ? 'LIST' : 'GET';
  if (method === 'PATCH' && (contentType ?? '').startsWith('application/apply-patch')) return 'APPLY';
  return method;
}

function resourceLabel(r: Route): string {
  if (r.kind === 'resource') return r.rt.resource;
  if (r.kind === 'emptyList') return r.listKind.replace(/List$/, '').toLowerCase() + 's';
  return '';
}

/** The client went away while a streamed body was being written. */
class ClientClosed extends Error {
  constructor() {
    super('the client closed the connection');
  }
}

export function createRequestListener(deps: RequestListenerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const limit = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const watchDeps: WatchDeps = { ...deps.watch, handlers: deps.handlers };
  const limiter = deps.inflight ? new InflightLimiter(deps.inflight) : undefined;

  const send = (res: ServerResponse, code: number, body: unknown, contentType = 'application/json', warnings: string[] = []): void => {
    if (res.headersSent) {
      res.end();
      return;
    }
    const payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const headers: Record<string, string | string[]> = { 'Content-Type': contentType, 'Cache-Control': 'no-cache, private' };
    if (warnings.length) headers['Warning'] = warningHeaders(warnings);
    // A Status that tells the client when to retry says it in the header too, as kube does (429, 503, 504).
    const retryAfter = (body as Partial<Status> | null)?.details?.retryAfterSeconds;
    if (retryAfter !== undefined) headers['Retry-After'] = String(retryAfter);
    res.writeHead(code, headers);
    res.end(payload);
  };

  /**
   * Writes a StreamedBody with backpressure. A failure once the 200 has started (the store gone, a
   * key reloaded away or the KMS down after the list's pre-scan) destroys the connection: the client must see a failed request,
   * not a complete-looking short list.
   */
  const sendStreamed = async (res: ServerResponse, code: number, body: StreamedBody, warnings: string[]): Promise<number> => {
    const headers: Record<string, string | string[]> = { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' };
    if (warnings.length) headers['Warning'] = warningHeaders(warnings);
    res.writeHead(code, headers);
    const write = (chunk: string): Promise<void> => {
      if (res.destroyed) return Promise.reject(new ClientClosed());
      if (res.write(chunk)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const done = (err?: Error): void => {
          res.off('drain', onDrain);
          res.off('close', onClose);
          if (err) reject(err);
          else resolve();
        };
        const onDrain = (): void => done();
        const onClose = (): void => done(new ClientClosed());
        res.once('drain', onDrain);
        res.once('close', onClose);
      });
    };
    try {
      await body.writeTo(write);
    } catch (err) {
      res.destroy();
      // A client that hung up is not a server error; anything else is answered (and logged) as one.
      if (err instanceof ClientClosed) return code;
      throw err;
    }
    res.end();
    return code;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, r: Route, url: URL, warnings: string[]): Promise<number> => {
    const method = req.method ?? 'GET';
    const query = url.searchParams;
    const accept = req.headers['accept'];
    let body: Buffer = Buffer.alloc(0);
    if (isMutatingMethod(method)) {
      try {
        body = await readBody(req, limit);
      } catch (err) {
        if (err instanceof BodyTooLarge) {
          res.setHeader('Connection', 'close');
          throw tooLarge(limit);
        }
        throw err;
      }
    }
    const onlyGet = (): void => {
      if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed(method);
    };
    const reply = (x: Reply): number | Promise<number> => {
      if (x.body instanceof StreamedBody) return sendStreamed(res, x.code, x.body, warnings);
      send(res, x.code, x.body, x.contentType, warnings);
      return x.code;
    };
    switch (r.kind) {
      case 'notFound':
        throw pathNotFound();
      case 'version':
        onlyGet();
        return reply({ code: 200, body: versionInfo() });
      case 'health': {
        onlyGet();
        const writable = deps.storeWritableCheck ? [deps.storeWritableCheck] : [];
        const checks = r.endpoint === 'livez' ? [pingCheck, logCheck, deps.storeCheck] : [pingCheck, logCheck, deps.storeCheck, ...writable, ...deps.kmsChecks()];
        if (r.endpoint === 'readyz') checks.push({ name: 'shutdown', check: async () => {} });
        const result = await runHealth(r.endpoint, checks, r.check, query, deps.log);
        if (!result) throw pathNotFound();
        return reply({ code: result.code, body: result.text, contentType: 'text/plain; charset=utf-8' });
      }
      case 'metrics':
        onlyGet();
        return reply({ code: 200, body: await deps.registry.metrics(), contentType: deps.registry.contentType });
      case 'openapi':
        onlyGet();
        if (r.version === 'v3') throw pathNotFound();
        return reply({ code: 200, body: Buffer.alloc(0), contentType: OPENAPI_V2_CONTENT_TYPE });
      case 'api': {
        onlyGet();
        if (wantsAggregated(accept)) return reply({ code: 200, body: aggregatedCore(), contentType: AGGREGATED_CONTENT_TYPE });
        const host = req.socket.localAddress ?? '127.0.0.1';
        return reply({ code: 200, body: legacyApiVersions(`${host.includes(':') ? `[${host}]` : host}:${req.socket.localPort ?? 0}`) });
      }
      case 'apis':
        onlyGet();
        if (wantsAggregated(accept)) return reply({ code: 200, body: aggregatedGroups(), contentType: AGGREGATED_CONTENT_TYPE });
        return reply({ code: 200, body: apiGroupList() });
      case 'apiV1':
        onlyGet();
        return reply({ code: 200, body: apiResourceList() });
      case 'apiGroup':
        onlyGet();
        return reply({ code: 200, body: apiGroupOf(r.group) });
      case 'apiGroupVersion':
        onlyGet();
        return reply({ code: 200, body: apiResourceList(r.groupVersion) });
      case 'emptyList':
        onlyGet();
        return reply({ code: 200, body: { kind: r.listKind, apiVersion: 'v1', metadata: { resourceVersion: '' }, items: [] } });
      case 'resource': {
        const rr: ResourceRequest = {
          rt: r.rt,
          ...(r.namespace !== undefined ? { namespace: r.namespace } : {}),
          ...(r.name !== undefined ? { name: r.name } : {}),
          ...(r.subresource ? { subresource: r.subresource } : {}),
          query,
          body,
          ...(req.headers['content-type'] ? { contentType: req.headers['content-type'] } : {}),
          wantTable: wantsTable(accept),
          warnings,
          fieldManager: fieldManagerOf(query, req.headers['user-agent']),
        };
        const h = deps.handlers;
        if (r.name === undefined) {
          if (method === 'GET') {
            if (isWatchRequest(query)) {
              await serveWatch(rr, res, watchDeps);
              return 200;
            }
            return reply(await h.list(rr));
          }
          if (method === 'POST' && (r.namespace !== undefined || !r.rt.namespaced)) return reply(await h.create(rr));
          throw methodNotAllowed(method);
        }
        switch (method) {
          case 'GET':
            return reply(await h.get(rr));
          case 'PUT':
            return reply(await h.update(rr));
          case 'PATCH':
            return reply(await h.patch(rr));
          case 'DELETE':
            if (rr.subresource) throw methodNotAllowed(method);
            return reply(await h.delete(rr));
          default:
            throw methodNotAllowed(method);
        }
      }
    }
  };

  return (req, res) => {
    const started = process.hrtime.bigint();
    res.setHeader('Audit-Id', randomUUID());
    const url = new URL(req.url ?? '/', 'https://localhost');
    let r: Route;
    try {
      r = route(url.pathname);
    } catch {
      r = { kind: 'notFound' };
    }
    const verb = verbOf(r, req.method ?? 'GET', url.searchParams, req.headers['content-type']);
    const warnings: string[] = [];
    // Authentication first, as kube's handler chain (WithAuthentication wraps WithMaxInFlightLimit):
    // a request without a valid token gets its 401 and never takes an in-flight slot.
    const authenticated = isPublicRoute(r) || deps.authenticator.authenticate(req.headers['authorization']) !== undefined;
    // Watches are long-running and health/version must answer under load: neither is limited (like kube).
    const limited = authenticated && limiter !== undefined && verb !== 'WATCH' && r.kind !== 'health' && r.kind !== 'version';
    if (limited) {
      const release = limiter.tryAcquire(isMutatingMethod(req.method ?? 'GET'));
      if (!release) {
        const status = statusFromError(tooManyRequests(RETRY_AFTER_SECONDS), deps.etcdPrefix);
        send(res, status.code, status);
        deps.metrics.observe(verb, resourceLabel(r), 429, Number(process.hrtime.bigint() - started) / 1e9);
        return;
      }
      res.once('close', release);
    }
    (authenticated ? handle(req, res, r, url, warnings) : Promise.reject(unauthorized()))
      .catch((err: unknown) => {
        const status = statusFromError(err, deps.etcdPrefix, deps.log);
        if (!(err instanceof ApiError) || status.code >= 500) deps.log.debug({ path: url.pathname, code: status.code }, 'request failed');
        send(res, status.code, status, 'application/json', warnings);
        return status.code;
      })
      .then((code) => {
        deps.metrics.observe(verb, resourceLabel(r), code, Number(process.hrtime.bigint() - started) / 1e9);
      })
      .catch((err: unknown) => {
        deps.log.error({ err: String(err) }, 'request accounting failed');
        // Never leave a client hanging when even the error reply could not be written.
        if (!res.writableEnded) res.destroy();
      });
  };
}
