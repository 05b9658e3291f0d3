// Flags of `--backend local` and reading them (commander's camelCase option values).
import { BackendError, type BackendFlag, type BackendOptions } from '../backend.js';

export const localFlags: BackendFlag[] = [
  { flags: '--key-file <path>', description: 'local backend: JSON file holding the AES-256 KEK versions (mode 0600)', env: 'ATREST_KEY_FILE' },
];

/** The `--key-file` path; a CONFIG error naming the flag when it is missing. */
export function keyFile(options: BackendOptions): string {
  const path = options['keyFile'];
  if (path === undefined || path === '') throw new BackendError('CONFIG', '--key-file is required for --backend local');
  return path;
}
