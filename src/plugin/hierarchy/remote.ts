// The key hierarchy's calls to the remote KEK (the kmip or pkcs11 backend): each one bounded by a
// timeout (a frozen KMIP server or HSM cannot hold a caller longer), counted by operation and
// outcome, and classed: success or a refusal (a revoked or destroyed key, bytes that are not its)
// means the remote is up; anything else (no answer, the timeout, a server-side failure) an outage. The outage is logged once
// when it starts and once when it ends, with the remote named and how long it lasted.
import { AtrestError, messageOf } from '../../errors.js';
import type { Logger } from '../../log.js';
import { BackendError, type KekBackend, type WrapResult } from '../backend.js';
import type { HierarchyMetrics, RemoteOperation } from './metrics.js';

export interface RemoteState {
  up: boolean;
  /** When the current state began (epoch ms). */
  since: number;
  /** Why the remote is down (the last failure's message). */
  reason?: string;
  lastSuccess?: number;
}

export interface RemoteKekOptions {
  /** Names the remote in logs and errors, e.g. `KMIP server 10.0.0.5:5696`. */
  endpoint: string;
  timeoutMs: number;
  log: Logger;
  metrics: HierarchyMetrics;
  now?: () => number;
}

/**
 * A definitive answer of the remote about a key: it does not exist (destroyed: KEY_NOT_FOUND), it
 * exists but is retired (KEY_RETIRED: a retirement the refresh has not seen yet), or the wrapped
 * bytes are not its (INVALID_CIPHERTEXT). Anything else (no answer, a timeout, a server-side failure
 * such as PyKMIP's General Failure) is an outage: the remote cannot do its job now, and may again
 * later.
 */
export function isRefusal(err: unknown): boolean {
  return err instanceof BackendError && (err.code === 'KEY_NOT_FOUND' || err.code === 'KEY_RETIRED' || err.code === 'INVALID_CIPHERTEXT');
}

/**
 * An outage as the plugin answers it: UNAVAILABLE (gRPC Unavailable), whatever code the remote
 * backend gave it (PyKMIP's General Failure and most PKCS#11 failures come as INTERNAL). Callers
 * tell "cannot check now" from "this value is refused" by that code (kube-apiserver retries,
 * `atrest verify` reports the value as not checked, never as undecryptable).
 */
function asOutage(err: unknown, endpoint: string): BackendError {
  if (err instanceof BackendError && err.code === 'UNAVAILABLE') return err;
  // The text of an error not of ours is not vetted for secrets (as toCallError): name its type only.
  const reason = err instanceof AtrestError ? err.message : `the remote KEK (${endpoint}) failed: ${err instanceof Error ? err.name : 'non-error thrown'}`;
  return new BackendError('UNAVAILABLE', reason, { cause: err });
}

export class RemoteKek {
  readonly endpoint: string;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  private readonly metrics: HierarchyMetrics;
  private readonly now: () => number;
  private state: RemoteState;

  constructor(readonly inner: KekBackend, options: RemoteKekOptions) {
    this.endpoint = options.endpoint;
    this.timeoutMs = options.timeoutMs;
    this.log = options.log;
    this.metrics = options.metrics;
    this.now = options.now ?? Date.now;
    this.state = { up: true, since: this.now() };
  }

  get status(): Readonly<RemoteState> {
    return this.state;
  }

  /** Wraps a new local KEK with the current remote KEK version. */
  wrap(localKek: Buffer): Promise<WrapResult> {
    return this.call('wrap', () => this.inner.encrypt(localKek));
  }

  /** Unwraps a wrapped local KEK (or, for values from before the hierarchy, a DEK or seed). */
  unwrap(wrapped: Uint8Array, operation: 'unwrap' | 'verify' = 'unwrap'): Promise<Buffer> {
    return this.call(operation, () => this.inner.decrypt(wrapped));
  }

  /** The remote backend's refresh (looks for a rotated remote KEK version). */
  refresh(): Promise<void> {
    return this.call('refresh', () => this.inner.refresh());
  }

  /** The remote backend's current key_id (from what it loaded; no remote call). */
  currentKeyId(): Promise<string> {
    return this.inner.currentKeyId();
  }

  currentKeyCreatedAt(): Promise<number | undefined> {
    return this.inner.currentKeyCreatedAt?.() ?? Promise.resolve(undefined);
  }

  private async call<T>(operation: RemoteOperation, run: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new BackendError('UNAVAILABLE', `the remote KEK (${this.endpoint}) did not answer a ${operation} within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    const running = run();
    // It may settle after the timeout: never as an unhandled rejection.
    running.catch(() => undefined);
    try {
      const result = await Promise.race([running, deadline]);
      this.metrics.remoteCall(operation, 'ok');
      this.answered();
      return result;
    } catch (err) {
      if (isRefusal(err)) {
        this.metrics.remoteCall(operation, 'refused');
        this.answered(false);
        throw err;
      }
      this.metrics.remoteCall(operation, 'unavailable');
      this.unreachable(operation, err);
      throw asOutage(err, this.endpoint);
    } finally {
      clearTimeout(timer);
    }
  }

  private answered(success = true): void {
    const at = this.now();
    if (!this.state.up) {
      this.log.info({ event: 'remote-kek-recovered', remote: this.endpoint, downForMs: at - this.state.since }, 'the remote KEK answers again');
      this.state = { up: true, since: at, ...(this.state.lastSuccess === undefined ? {} : { lastSuccess: this.state.lastSuccess }) };
    }
    if (success) this.state.lastSuccess = at;
  }

  private unreachable(operation: RemoteOperation, err: unknown): void {
    const reason = messageOf(err);
    if (this.state.up) {
      this.log.error({ event: 'remote-kek-unavailable', remote: this.endpoint, operation, err: reason },
        'the remote KEK is unavailable: serving Encrypt and Decrypt with the local KEKs held in memory; values under other local KEKs cannot be decrypted until it is back');
      this.state = { up: false, since: this.now(), reason, ...(this.state.lastSuccess === undefined ? {} : { lastSuccess: this.state.lastSuccess }) };
    } else {
      this.state.reason = reason;
    }
  }
}
