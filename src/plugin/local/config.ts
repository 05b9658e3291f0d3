// Flags of `--backend local` and reading them (commander's camelCase option values).
import { GoDurationError, nanosToMillis, parseGoDuration } from '../../config/go-duration.js';
import { BackendError, type BackendFlag, type BackendOptions } from '../backend.js';

/** How long a retired version stays restorable by default: 30 days. */
export const DEFAULT_RETIREMENT_GRACE_PERIOD = '720h';
const DEFAULT_RETIREMENT_GRACE_MS = 720 * 3600 * 1000;

export const localFlags: BackendFlag[] = [
  { flags: '--key-file <path>', description: 'local backend: JSON file holding the AES-256 KEK versions (mode 0600)', env: 'ATREST_KEY_FILE' },
  {
    flags: '--rotation-period <duration>',
    description: 'local backend: the running plugin adds a new KEK version once the current one is this old (Go duration, e.g. 720h; the key file\'s directory must be writable)',
    env: 'ATREST_ROTATION_PERIOD',
  },
  {
    flags: '--retirement-grace-period <duration>',
    description: 'local backend: how long a retired KEK version stays in the key file, restorable with restore-key (Go duration)',
    env: 'ATREST_RETIREMENT_GRACE_PERIOD',
    defaultValue: DEFAULT_RETIREMENT_GRACE_PERIOD,
  },
];

/** The `--key-file` path; a CONFIG error naming the flag when it is missing. */
export function keyFile(options: BackendOptions): string {
  const path = options['keyFile'];
  if (path === undefined || path === '') throw new BackendError('CONFIG', '--key-file is required for --backend local');
  return path;
}

/** A Go duration flag in milliseconds, at least `minMs`; undefined when the flag is not set. */
function durationMs(options: BackendOptions, key: string, flag: string, minMs: number): number | undefined {
  const text = options[key];
  if (text === undefined || text === '') return undefined;
  let ms: number;
  try {
    ms = nanosToMillis(parseGoDuration(text));
  } catch (err) {
    if (err instanceof GoDurationError) throw new BackendError('CONFIG', `${flag}: ${err.message}`);
    throw err;
  }
  if (!(ms >= minMs)) throw new BackendError('CONFIG', `${flag} ${text}: must be at least ${minMs / 1000}s`);
  return ms;
}

/** `--rotation-period` in ms, or undefined (no scheduled rotation). */
export function rotationPeriodMs(options: BackendOptions): number | undefined {
  return durationMs(options, 'rotationPeriod', '--rotation-period', 1000);
}

/** `--retirement-grace-period` in ms (0 is allowed: the version leaves the file when it is retired). */
export function retirementGraceMs(options: BackendOptions): number {
  return durationMs(options, 'retirementGracePeriod', '--retirement-grace-period', 0) ?? DEFAULT_RETIREMENT_GRACE_MS;
}
