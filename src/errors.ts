// The one error base of the project: every error we raise on purpose carries a stable `code`
// (for tests, metrics and the API's Status mapping) and a message that never holds key material
// or secret values. This file is a leaf: it imports nothing and every layer may import it.

export class AtrestError extends Error {
  /** A stable, machine-readable code such as `CONFIG_INVALID` or `TRANSFORM_FAILED`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** True when `err` is an AtrestError with the given code. */
export function hasCode(err: unknown, code: string): boolean {
  return err instanceof AtrestError && err.code === code;
}

/** The message of any thrown value, for one-line reports. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
