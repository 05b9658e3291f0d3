// A fixed set of PKCS#11 sessions handed out one caller at a time. A session carries at most one
// active operation (C_EncryptInit ... C_Encrypt), so each call leases a session for its whole
// operation; several sessions let calls run in parallel on modules that allow it.
// Closing never closes a session that is in use (its operation may be running on a libuv worker
// thread): leased sessions are closed when they come back, and `drained` waits for that.
import { BackendError } from '../backend.js';
import type { Handle } from './library.js';

/** A call queued for a session when the pool closed; the backend retries it on a new connection. */
export class PoolClosedError extends BackendError {
  constructor() {
    super('UNAVAILABLE', 'the PKCS#11 sessions were closed (backend closing or reconnecting)');
  }
}

export class SessionPool {
  private readonly free: Handle[];
  private readonly waiters: Array<{ resolve: (s: Handle) => void; reject: (e: Error) => void }> = [];
  private leased = 0;
  private closed = false;
  private onDrained: (() => void) | undefined;

  constructor(
    sessions: readonly Handle[],
    private readonly closeSession: (session: Handle) => void,
  ) {
    this.free = [...sessions];
    this.size = sessions.length;
  }

  readonly size: number;

  /** Runs `fn` with a session nobody else uses until it settles. */
  async use<T>(fn: (session: Handle) => Promise<T> | T): Promise<T> {
    if (this.closed) throw new PoolClosedError();
    let session = this.free.pop();
    if (session === undefined) {
      session = await new Promise<Handle>((resolve, reject) => this.waiters.push({ resolve, reject }));
    } else {
      this.leased++;
    }
    try {
      return await fn(session);
    } finally {
      this.giveBack(session);
    }
  }

  private giveBack(session: Handle): void {
    if (this.closed) {
      this.leased--;
      this.closeSession(session);
      if (this.leased === 0) this.onDrained?.();
      return;
    }
    const waiter = this.waiters.shift();
    // The lease passes straight to the waiter, so `leased` stays the same.
    if (waiter) waiter.resolve(session);
    else {
      this.leased--;
      this.free.push(session);
    }
  }

  /** Stops handing out sessions: closes idle ones now, leased ones when they come back. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(new PoolClosedError());
    for (const session of this.free.splice(0)) this.closeSession(session);
  }

  /** Resolves once no session is leased any more (after close). */
  drained(): Promise<void> {
    if (this.leased === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.onDrained;
      this.onDrained = () => {
        previous?.();
        resolve();
      };
    });
  }
}
