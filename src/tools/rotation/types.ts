// What the rotation lifecycle (`atrest rotate`) works with, as small interfaces: the KEK backend (the
// CLI adapts the plugin's BackendModule to it: tools do not import the plugin), the store-side
// checks, the API servers, and where progress goes. Failures are RotateErrors whose kind decides
// the exit code and whose remedy says what to do.
import { AtrestError } from '../../errors.js';

/** A KEK version as the lifecycle needs it (the plugin's KeyVersionInfo). */
export interface KeyVersionView {
  keyId: string;
  version: number;
  /** current wraps new values; active still unwraps (a rotation not finished); retired does not. */
  state: 'current' | 'active' | 'retired';
  purgeAfter?: number;
}

export interface RotationBackend {
  readonly name: string;
  /** Every version, oldest first. */
  listKeys(): Promise<KeyVersionView[]>;
  /** Adds a version that becomes current; returns its key_id. */
  rotateKey(): Promise<string>;
  retireKey(keyId: string): Promise<KeyVersionView>;
  /** The command that brings a retired version back, or undefined where retirement is final. */
  restoreCommand(keyId: string): string | undefined;
}

/** Progress for the operator: numbered steps and lines under them. */
export interface RotateReporter {
  step(n: number, of: number, title: string): void;
  line(text: string): void;
}

export const STEPS = ['rotate-kek', 'wait', 'migrate', 'verify', 'retire'] as const;
export type StepName = (typeof STEPS)[number];

/**
 * findings: a check found something in the way (values still need the old version) — exit 1;
 * usage: flags or configuration — exit 2; incomplete: a wait timed out, a peer failed — exit 3.
 */
export type RotateErrorKind = 'findings' | 'usage' | 'incomplete';

export class RotateError extends AtrestError {
  constructor(readonly kind: RotateErrorKind, message: string, readonly remedy: string, options?: { cause?: unknown }) {
    super(kind === 'findings' ? 'ROTATE_FINDINGS' : kind === 'usage' ? 'ROTATE_USAGE' : 'ROTATE_INCOMPLETE', message, options);
  }
}

/** Bounded polling: `check` until it returns a value, every `pollMs`, else a RotateError (incomplete) from `onTimeout`. */
export async function pollUntil<T>(check: () => Promise<T | undefined>, o: { timeoutMs: number; pollMs: number; onTimeout: () => RotateError; signal?: AbortSignal }): Promise<T> {
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (o.signal?.aborted) throw new RotateError('incomplete', 'interrupted', 'run atrest rotate again: it continues where it stopped');
    if (Date.now() >= deadline) throw o.onTimeout();
    await new Promise((r) => setTimeout(r, o.pollMs));
  }
}
