// One gRPC channel to a KMS plugin over a UNIX socket, with kube-apiserver's call behaviour
// (format.md §2.3): insecure credentials, authority `localhost`, a deadline of `timeout` on every
// call, and wait-for-ready so a call made before the plugin listens waits for it until its deadline.
// Messages are (de)serialized with the generated protobuf schemas; failures become
// KmsUnavailableError with Go's `rpc error: code = <Code> desc = <details>` text.
import * as grpc from '@grpc/grpc-js';
import { fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { KmsUnavailableError } from './errors.js';
import type { UnixEndpoint } from './endpoint.js';

/** Go's codes.Code names, indexed by number: the `grpc_status_code` metric label. */
export const GRPC_CODE_NAMES = [
  'OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists',
  'PermissionDenied', 'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange',
  'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated',
] as const;

export function grpcCodeName(code: number): string {
  return GRPC_CODE_NAMES[code] ?? `Code(${code})`;
}

export interface CallObserver {
  (method: string, code: string, seconds: number): void;
}

export interface GrpcConnectionOptions {
  endpoint: UnixEndpoint;
  timeoutMs: number;
  /** Reconnect backoff bounds; small by default since the peer is a local socket. */
  initialReconnectBackoffMs?: number;
  maxReconnectBackoffMs?: number;
  onCall?: CallObserver;
}

export class GrpcConnection {
  private readonly client: grpc.Client;
  private readonly timeoutMs: number;
  private readonly onCall: CallObserver | undefined;
  private closed = false;

  constructor(options: GrpcConnectionOptions) {
    this.timeoutMs = options.timeoutMs;
    this.onCall = options.onCall;
    this.client = new grpc.Client(options.endpoint.grpcTarget, grpc.credentials.createInsecure(), {
      'grpc.default_authority': 'localhost',
      'grpc.initial_reconnect_backoff_ms': options.initialReconnectBackoffMs ?? 100,
      'grpc.max_reconnect_backoff_ms': options.maxReconnectBackoffMs ?? 1000,
    });
  }

  unary<I extends DescMessage, O extends DescMessage>(method: string, input: I, output: O, request: MessageShape<I>): Promise<MessageShape<O>> {
    if (this.closed) return Promise.reject(new KmsUnavailableError('rpc error: code = Canceled desc = grpc: the client connection is closing', 'Canceled'));
    const started = performance.now();
    const metadata = new grpc.Metadata({ waitForReady: true });
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest<MessageShape<I>, MessageShape<O>>(
        method,
        (m) => Buffer.from(toBinary(input, m)),
        (b) => fromBinary(output, b),
        request,
        metadata,
        { deadline: Date.now() + this.timeoutMs },
        (err, response) => {
          const seconds = (performance.now() - started) / 1000;
          if (err || !response) {
            const code = grpcCodeName(err?.code ?? grpc.status.UNKNOWN);
            this.onCall?.(method, code, seconds);
            const details = err?.details || err?.message || 'no response';
            // A plugin that answered with an error leaves the channel READY; one that could not be
            // reached (no socket, refused, dropped, never finished the handshake) does not.
            const unreachable = this.client.getChannel().getConnectivityState(false) !== grpc.connectivityState.READY;
            reject(new KmsUnavailableError(`rpc error: code = ${code} desc = ${details}`, code, { cause: err, unreachable }));
            return;
          }
          this.onCall?.(method, 'OK', seconds);
          resolve(response);
        },
      );
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }
}
