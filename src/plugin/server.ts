// The KMS plugin server: one @grpc/grpc-js server on one UNIX socket serving
// `v1beta1.KeyManagementService` (Version, Encrypt, Decrypt), `v2.KeyManagementService` (Status,
// Encrypt, Decrypt) and, for kube-apiserver 1.25–1.26, the same v2 service under its old name
// `v2alpha1.KeyManagementService`. The socket is ours (unix-listener.ts: mode 0600, stale files
// replaced, live ones refused) and connections are injected into grpc-js through the HTTP/2 edge
// (http2-edge/edge.ts: repairs the :authority Node's HTTP/2 would refuse). Every few seconds the
// backend is refreshed so a rotated KEK is noticed without a restart. close() is graceful: stop
// accepting, let in-flight calls finish (up to a grace period), remove the socket.
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { DescService } from '@bufbuild/protobuf';
import { messageOf } from '../errors.js';
import * as v1 from '../gen/v1beta1/api_pb.js';
import * as v2 from '../gen/v2/api_pb.js';
import { silentLogger, type Logger } from '../log.js';
import { newRegistry, type Registry } from '../metrics.js';
import type { KekBackend } from './backend.js';
import { PluginError } from './errors.js';
import { serviceDefinition } from './grpc-services.js';
import { KmsHandlers, toCallError } from './kms-handlers.js';
import { parseListenAddress, type ListenAddress } from './listen-address.js';
import { Http2Edge } from './http2-edge/edge.js';
import { keyIdHash, PluginMetrics } from './metrics.js';
import { RoundTripHealth, type HealthResult } from './round-trip-health.js';
import { listenUnix, type UnixListener } from './unix-listener.js';

export type StatusVersion = 'v2' | 'v2beta1';

export interface PluginServerOptions {
  /** `unix:///path/to/kms.sock` or `unix:///@name` (abstract). */
  listen: string;
  backend: KekBackend;
  log?: Logger;
  /** Where the plugin's metrics go (a fresh registry if absent). */
  metrics?: Registry;
  /** How often `backend.refresh()` runs (default 5000 ms). */
  refreshIntervalMs?: number;
  /** How long a successful Status round trip is trusted (default 5000 ms; failures 1000 ms). */
  healthSuccessTtlMs?: number;
  healthFailureTtlMs?: number;
  /** v2 Status `version` (default `v2beta1`: kube-apiserver 1.27–1.28 want exactly it, 1.29+ take it or `v2`). */
  statusVersion?: StatusVersion;
  /** How long close() waits for in-flight calls before cutting connections (default 10000 ms). */
  shutdownGraceMs?: number;
  /** Largest gRPC message accepted or sent (default 64 KiB; real requests are well under 2 KiB). */
  maxMessageBytes?: number;
  /** Version string in v1 Version answers (default the package version). */
  runtimeVersion?: string;
  /** Close the backend when the server closes (default false: the caller owns it). */
  closeBackend?: boolean;
  /**
   * Repair the HTTP/2 :authority of clients Node's HTTP/2 would refuse (default true). False hands
   * connections to grpc-js as accepted, as before issue #19: a baseline for the benchmark, and an
   * escape hatch; clients that send a socket path as :authority (kube-apiserver 1.27/1.28) then fail.
   */
  authorityRepair?: boolean;
}

export interface PluginServer {
  /** The endpoint kube-apiserver dials (`unix:///...`). */
  readonly endpoint: string;
  readonly address: ListenAddress;
  readonly metrics: Registry;
  /** The backend round trip behind v2 Status healthz (cached). */
  health(): Promise<HealthResult>;
  /** Runs one backend refresh now (what the timer does); resolves to the current key_id. */
  refreshNow(): Promise<string>;
  /** Graceful stop; idempotent. */
  close(): Promise<void>;
}

export const DEFAULT_RUNTIME_VERSION = '0.1.0';

type Handler = (request: never) => Promise<unknown>;

export async function startPluginServer(options: PluginServerOptions): Promise<PluginServer> {
  const address = parseListenAddress(options.listen);
  const log = options.log ?? silentLogger();
  const registry = options.metrics ?? newRegistry();
  const metrics = new PluginMetrics(registry);
  const backend = options.backend;
  const refreshIntervalMs = options.refreshIntervalMs ?? 5000;
  const graceMs = options.shutdownGraceMs ?? 10_000;
  const maxMessageBytes = options.maxMessageBytes ?? 64 * 1024;
  if (!(refreshIntervalMs >= 50)) throw new PluginError('PLUGIN_CONFIG', `refresh interval must be at least 50 ms, not ${refreshIntervalMs}`);
  const statusVersion = options.statusVersion ?? 'v2beta1';
  if (statusVersion !== 'v2' && statusVersion !== 'v2beta1') {
    throw new PluginError('PLUGIN_CONFIG', `status version must be v2 or v2beta1, not ${JSON.stringify(statusVersion)}`);
  }

  const health = new RoundTripHealth(backend, {
    ...(options.healthSuccessTtlMs !== undefined ? { successTtlMs: options.healthSuccessTtlMs } : {}),
    ...(options.healthFailureTtlMs !== undefined ? { failureTtlMs: options.healthFailureTtlMs } : {}),
  });
  const handlers = new KmsHandlers({ backend, health, statusVersion, runtimeVersion: options.runtimeVersion ?? DEFAULT_RUNTIME_VERSION });

  let currentKeyId = await backend.currentKeyId();
  metrics.setCurrentKeyId(currentKeyId, false, await backend.currentKeyCreatedAt?.());

  const grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    // Nobody can query channelz here (no channelz service is registered), and its per-call
    // bookkeeping is a measurable share of a KMS call's CPU.
    'grpc.enable_channelz': 0,
  });
  const unary = (apiVersion: string, method: string, handler: Handler): grpc.handleUnaryCall<unknown, unknown> =>
    (call, callback) => {
      const started = performance.now();
      let pending: Promise<unknown>;
      try {
        pending = handler(call.request as never);
      } catch (err) {
        pending = Promise.reject(err);
      }
      pending.then(
        (response) => {
          metrics.observe(apiVersion, method, 'OK', (performance.now() - started) / 1000);
          callback(null, response);
        },
        (err: unknown) => {
          const failure = toCallError(err);
          const outcome = grpcCodeName(failure.grpcCode);
          metrics.observe(apiVersion, method, outcome, (performance.now() - started) / 1000);
          // A refused ciphertext or a retired KEK version is a verdict on the value, not a plugin fault.
          const level = failure.grpcCode === grpc.status.INVALID_ARGUMENT || failure.grpcCode === grpc.status.FAILED_PRECONDITION ? 'warn' : 'error';
          log[level]({ event: 'call-failed', apiVersion, method, grpcCode: outcome, err: failure.message }, 'KMS call failed');
          callback({ code: failure.grpcCode, details: failure.message });
        },
      ).catch((err: unknown) => {
        // Answering failed (e.g. the caller went away): never let it become an unhandled rejection.
        log.error({ event: 'respond-failed', apiVersion, method, err: messageOf(err) }, 'could not answer a KMS call');
      });
    };
  const add = (service: DescService, typeName: string, apiVersion: string, methods: Record<string, Handler>): void => {
    const impl: grpc.UntypedServiceImplementation = {};
    for (const [name, handler] of Object.entries(methods)) impl[name] = unary(apiVersion, name, handler);
    grpcServer.addService(serviceDefinition(service, typeName), impl);
  };
  add(v1.KeyManagementService, 'v1beta1.KeyManagementService', 'v1beta1', {
    Version: (r: v1.VersionRequest) => handlers.v1Version(r),
    Encrypt: (r: v1.EncryptRequest) => handlers.v1Encrypt(r),
    Decrypt: (r: v1.DecryptRequest) => handlers.v1Decrypt(r),
  });
  add(v2.KeyManagementService, 'v2.KeyManagementService', 'v2', {
    Status: () => handlers.v2Status(),
    Encrypt: (r: v2.EncryptRequest) => handlers.v2Encrypt(r),
    Decrypt: (r: v2.DecryptRequest) => handlers.v2Decrypt(r),
  });
  add(v2.KeyManagementService, 'v2alpha1.KeyManagementService', 'v2alpha1', {
    Status: () => handlers.v2Status('v2alpha1'),
    Encrypt: (r: v2.EncryptRequest) => handlers.v2Encrypt(r),
    Decrypt: (r: v2.DecryptRequest) => handlers.v2Decrypt(r),
  });
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());

  const edge = options.authorityRepair === false ? undefined
    : new Http2Edge({ inject: (connection) => injector.injectConnection(connection), log, onRepaired: () => metrics.authorityRepaired() });
  let listener: UnixListener;
  try {
    listener = await listenUnix(address, edge ? (socket) => edge.accept(socket) : (socket) => injector.injectConnection(socket));
  } catch (err) {
    grpcServer.forceShutdown();
    throw err;
  }

  if (!address.abstract) await warnIfDirectoryIsShared(address.path, log);

  // Rotation watch: refresh the backend, notice a new current key_id, log it once.
  let lastRefreshError: string | undefined;
  const refreshNow = async (): Promise<string> => {
    try {
      await backend.refresh();
      const keyId = await backend.currentKeyId();
      if (lastRefreshError !== undefined) log.info({ event: 'refresh-recovered' }, 'backend refresh works again');
      lastRefreshError = undefined;
      if (keyId !== currentKeyId) {
        log.info({ event: 'rotation', keyIdHash: keyIdHash(keyId), previousKeyIdHash: keyIdHash(currentKeyId) }, 'KEK rotated: new ciphertexts use the new key_id');
        currentKeyId = keyId;
        metrics.setCurrentKeyId(keyId, true, await backend.currentKeyCreatedAt?.());
        health.invalidate();
      }
    } catch (err) {
      metrics.refreshFailed();
      const message = toCallError(err).message;
      if (message !== lastRefreshError) log.error({ event: 'refresh-failed', err: message }, 'backend refresh failed; serving with the keys already loaded');
      lastRefreshError = message;
    }
    return currentKeyId;
  };
  let refreshing: Promise<string> | undefined;
  const timer = setInterval(() => {
    refreshing ??= refreshNow().finally(() => { refreshing = undefined; });
  }, refreshIntervalMs);
  timer.unref();

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      clearInterval(timer);
      await listener.stop();
      edge?.close();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          log.warn({ event: 'shutdown-forced', graceMs }, 'in-flight calls did not finish in time; closing connections');
          grpcServer.forceShutdown();
          resolve();
        }, graceMs);
        grpcServer.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await Promise.race([listener.closed, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
      if (refreshing) await refreshing;
      if (options.closeBackend) await backend.close().catch((err: unknown) => log.error({ event: 'backend-close-failed', err: messageOf(err) }, 'closing the backend failed'));
    })();
    return closing;
  };

  const endpoint = address.abstract ? `unix:///@${address.path}` : `unix://${address.path}`;
  return {
    endpoint,
    address,
    metrics: registry,
    health: () => health.check(),
    refreshNow: () => refreshing ?? refreshNow(),
    close,
  };
}

/**
 * A socket in a directory others may write to (without the sticky bit) can be unlinked and replaced
 * by another user's socket that kube-apiserver would then talk to: say so once at start.
 */
async function warnIfDirectoryIsShared(socketPath: string, log: Logger): Promise<void> {
  try {
    const dir = dirname(socketPath);
    const info = await stat(dir);
    if ((info.mode & 0o022) !== 0 && (info.mode & 0o1000) === 0) {
      log.warn({ event: 'socket-dir-shared', dir, mode: (info.mode & 0o7777).toString(8) },
        'the socket directory is writable by group or others: use a 0700 directory so nobody can replace the socket');
    }
  } catch {
    // best effort
  }
}

const CODE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(grpc.status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v as number, k]),
);

/** Go's names for gRPC codes (`InvalidArgument`), as metric labels and logs show them. */
export function grpcCodeName(code: number): string {
  const upper = CODE_NAMES[code];
  if (!upper) return `Code(${code})`;
  return upper.toLowerCase().replace(/(^|_)([a-z])/g, (_m, _u: string, c: string) => c.toUpperCase());
}


