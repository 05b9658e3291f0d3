// `--health-listen host:port`: a small HTTP server for probes and scraping.
//   /healthz  a real v2 Encrypt+Decrypt round trip through the plugin's socket and backend
//             (200 `ok`, else 503 with the reason); concurrent probes share one round trip. With
//             the key hierarchy it is also 503 while the remote KEK is unreachable, although the
//             plugin still serves: the outage needs an operator, not a restart.
//   /livez    200 `ok` while the process serves (for liveness probes: never restarts a plugin
//             that serves through a remote outage).
//   /metrics  the plugin's Prometheus registry.
import http from 'node:http';
import { isIP } from 'node:net';
import { messageOf } from '../errors.js';
import { describeListenError } from '../listen-error.js';
import type { Logger } from '../log.js';
import type { Registry } from '../metrics.js';
import { PluginError } from './errors.js';
import type { ListenAddress } from './listen-address.js';
import { PluginSocketClient } from './socket-client.js';

export interface HealthServer {
  /** The bound `host:port` (the real port when 0 was asked for). */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

export function parseHostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || !Number.isInteger(port) || port > 65535) {
    throw new PluginError('PLUGIN_HEALTH_LISTEN_INVALID', `--health-listen ${JSON.stringify(value)}: expected host:port such as 127.0.0.1:8081 or [::1]:8081`);
  }
  if (m[1] && isIP(host) !== 6) throw new PluginError('PLUGIN_HEALTH_LISTEN_INVALID', `--health-listen ${JSON.stringify(value)}: ${host} is not an IPv6 address`);
  return { host, port };
}

export interface HealthServerOptions {
  listen: string;
  socket: ListenAddress;
  metrics: Registry;
  log: Logger;
  timeoutMs?: number;
  /** Why the backend is impaired although it serves (KekBackend.degraded); fails /healthz. */
  degraded?: () => string | undefined;
}

export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const { host, port } = parseHostPort(options.listen);
  const client = new PluginSocketClient(options.socket, options.timeoutMs ?? 3000);
  let inFlight: Promise<string | undefined> | undefined;
  const roundTrip = (): Promise<string | undefined> => {
    inFlight ??= client.roundTrip().then(() => undefined, (err: unknown) => messageOf(err)).finally(() => { inFlight = undefined; });
    return inFlight;
  };
  let lastFailure: string | undefined;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    if (path === '/livez') return send(200, 'ok\n');
    if (path === '/healthz') {
      void roundTrip().then((roundTripFailure) => {
        const impaired = roundTripFailure === undefined ? options.degraded?.() : undefined;
        const failure = roundTripFailure ?? impaired;
        if (failure === undefined) {
          lastFailure = undefined;
          return send(200, 'ok\n');
        }
        if (failure !== lastFailure && roundTripFailure !== undefined) options.log.error({ event: 'healthz-failed', err: failure }, 'health check round trip failed');
        lastFailure = failure;
        send(503, roundTripFailure !== undefined ? `round trip through the KMS plugin socket failed: ${roundTripFailure}\n` : `degraded: ${failure}\n`);
      });
      return;
    }
    if (path === '/metrics') {
      void options.metrics.metrics().then(
        (text) => send(200, text, options.metrics.contentType),
        (err: unknown) => send(500, `metrics failed: ${messageOf(err)}\n`),
      );
      return;
    }
    send(404, 'not found: try /healthz, /livez or /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => {
      client.close();
      reject(new PluginError('PLUGIN_HEALTH_LISTEN_INVALID', describeListenError(err, options.listen, { port: '--health-listen', address: '--health-listen' }), { cause: err }));
    });
    server.listen({ host, port }, () => resolve());
  });
  const bound = server.address();
  const boundPort = typeof bound === 'object' && bound ? bound.port : port;
  return {
    address: host.includes(':') ? `[${host}]:${boundPort}` : `${host}:${boundPort}`,
    port: boundPort,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      client.close();
    },
  };
}
