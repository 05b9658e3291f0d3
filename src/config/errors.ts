// The one error type of the config layer. Every message is a single line that names the file
// (when there is one) and never contains a key secret: validation shows secrets as "REDACTED"
// and decode errors never echo file content.
import { AtrestError } from '../errors.js';
import type { FieldError } from './field-errors.js';

export type ConfigErrorCode =
  /** The file does not exist. */
  | 'CONFIG_NOT_FOUND'
  /** The file exists but could not be read (permissions, a directory, ...). */
  | 'CONFIG_READ'
  /** The file is zero bytes long. */
  | 'CONFIG_EMPTY'
  /** Not YAML/JSON, unknown kind, unknown or duplicate fields, wrong value types. */
  | 'CONFIG_DECODE'
  /** Decoded, but a validation rule (format.md §3.3) or the cross-entry masking rule failed. */
  | 'CONFIG_INVALID';

export class ConfigError extends AtrestError {
  declare readonly code: ConfigErrorCode;
  /** The configuration file, when the error came from loading one. */
  readonly path: string | undefined;
  /** For CONFIG_INVALID from validation: every rule that failed, in kube's order. */
  readonly fieldErrors: readonly FieldError[];

  constructor(
    code: ConfigErrorCode,
    message: string,
    options: { path?: string; fieldErrors?: readonly FieldError[]; cause?: unknown } = {},
  ) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.path = options.path;
    this.fieldErrors = options.fieldErrors ?? [];
  }
}
