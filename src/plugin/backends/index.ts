// The KEK backends `atrest kms-plugin --backend <name>` can use, by name with their flags. A
// backend's implementation is imported only when it is chosen, so defining the command's options
// (and its --help) loads none of them.
import type { BackendFlag, BackendModule } from '../backend.js';
import { kmipFlags } from '../kmip/config.js';
import { localFlags } from '../local/config.js';
import { pkcs11Flags } from '../pkcs11/config.js';

export interface BackendEntry {
  readonly name: string;
  readonly flags: readonly BackendFlag[];
  /** Imports the backend (a BackendModule with the same name and flags). */
  load(): Promise<BackendModule>;
}

export const backends: readonly BackendEntry[] = [
  { name: 'local', flags: localFlags, load: async () => (await import('./local.js')).localBackend },
  { name: 'pkcs11', flags: pkcs11Flags, load: async () => (await import('./pkcs11.js')).pkcs11Backend },
  { name: 'kmip', flags: kmipFlags, load: async () => (await import('./kmip.js')).kmipBackend },
];

export function backendByName(name: string): BackendEntry | undefined {
  return backends.find((b) => b.name === name);
}
