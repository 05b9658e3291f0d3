// Fault injection for KEK backends (what a real backend cannot be made to do on demand): wraps a real
// KekBackend (the local file backend, or SoftHSM's pkcs11 backend, which runs inside this process
// and so cannot be stopped or frozen) and makes every call fail as an outage (`down`), hang
// (`frozen`), or be refused as a revoked key would be (`refusing`). It counts the calls that reach
// the real backend.
import { registerTestSecret } from './test-log.js';
import { BackendError, type Annotations, type KekBackend, type WrapOptions, type WrapResult, type WrappingVersion } from '../../src/plugin/backend.js';

export type FaultMode = 'up' | 'down' | 'failing' | 'frozen' | 'refusing';

export class FaultyKek implements KekBackend {
  mode: FaultMode = 'up';
  /** Calls that reached the real backend, by method. */
  readonly calls = { encrypt: 0, decrypt: 0, refresh: 0 };
  /**
   * Copies of what was handed to encrypt: under the key hierarchy these are the raw local KEKs, so
   * tests can check they appear in no log line and no error (each is also registered for the log scan).
   */
  readonly plaintexts: Buffer[] = [];
  private readonly frozen: Array<() => void> = [];

  /** The real backend's (what its last refresh loaded: no call, so no fault applies), or `usableOverride`. */
  readonly usableKeyIds?: () => ReadonlySet<string>;
  readonly wrappedBy?: (ciphertext: Uint8Array) => WrappingVersion | undefined;
  /** What usableKeyIds answers instead of the real backend (an implausible listing). */
  usableOverride: ReadonlySet<string> | undefined;

  constructor(readonly inner: KekBackend) {
    if (inner.usableKeyIds) this.usableKeyIds = () => this.usableOverride ?? inner.usableKeyIds!();
    if (inner.wrappedBy) this.wrappedBy = (ciphertext) => inner.wrappedBy!(ciphertext);
  }

  get kind(): string {
    return this.inner.kind;
  }

  currentKeyId(): Promise<string> {
    return this.inner.currentKeyId();
  }

  currentKeyCreatedAt(): Promise<number | undefined> {
    return this.inner.currentKeyCreatedAt?.() ?? Promise.resolve(undefined);
  }

  encrypt(plaintext: Uint8Array, options?: WrapOptions): Promise<WrapResult> {
    return this.gate(() => {
      this.calls.encrypt++;
      this.plaintexts.push(Buffer.from(plaintext));
      registerTestSecret(plaintext, 'local-kek');
      return this.inner.encrypt(plaintext, options);
    });
  }

  decrypt(ciphertext: Uint8Array, annotations?: Annotations): Promise<Buffer> {
    return this.gate(() => { this.calls.decrypt++; return this.inner.decrypt(ciphertext, annotations); });
  }

  /** A refusing remote still answers refresh (a revoked key is still listed). */
  refresh(): Promise<void> {
    return this.gate(() => { this.calls.refresh++; return this.inner.refresh(); }, this.mode === 'refusing');
  }

  /** Back to `up`; calls that hung while frozen fail now (as a TCP reset would end them). */
  recover(): void {
    this.mode = 'up';
    for (const release of this.frozen.splice(0)) release();
  }

  close(): Promise<void> {
    this.recover();
    return this.inner.close();
  }

  private gate<T>(run: () => Promise<T>, pass = false): Promise<T> {
    switch (pass ? 'up' : this.mode) {
      case 'up':
        return run();
      case 'down':
        return Promise.reject(new BackendError('UNAVAILABLE', 'injected outage: remote unreachable (ECONNREFUSED)'));
      case 'failing':
        return Promise.reject(new BackendError('INTERNAL', 'injected server failure: General Failure'));
      case 'refusing':
        return Promise.reject(new BackendError('KEY_NOT_FOUND', 'injected refusal: the remote key is Deactivated (revoked?)'));
      case 'frozen':
        return new Promise<T>((_resolve, reject) => {
          this.frozen.push(() => reject(new BackendError('UNAVAILABLE', 'injected outage: connection reset after a freeze')));
        });
    }
  }
}
