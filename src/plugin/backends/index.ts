// The KEK backends `atrest kms-plugin --backend <name>` can use.
import type { BackendModule } from '../backend.js';
import { localBackend } from './local.js';
import { pkcs11Backend } from './pkcs11.js';
import { kmipBackend } from './kmip.js';

export const backends: readonly BackendModule[] = [localBackend, pkcs11Backend, kmipBackend];

export function backendByName(name: string): BackendModule | undefined {
  return backends.find((b) => b.name === name);
}
