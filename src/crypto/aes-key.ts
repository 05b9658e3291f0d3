// AES key setup shared by CBC and GCM: the raw key becomes a node:crypto KeyObject once, so the key
// bytes are not copied into every cipher call.
import { createSecretKey, type KeyObject } from 'node:crypto';
import { invalidAesKeySize } from './errors.js';

export type AesBits = 128 | 192 | 256;

/** 16, 24 or 32 bytes → AES-128/192/256 (format.md §1.2, §1.3); anything else throws INVALID_KEY. */
export function aesBits(keyLength: number): AesBits {
  switch (keyLength) {
    case 16: return 128;
    case 24: return 192;
    case 32: return 256;
    default: throw invalidAesKeySize(keyLength);
  }
}

export function aesKeyObject(raw: Uint8Array): { key: KeyObject; bits: AesBits } {
  const bits = aesBits(raw.length);
  return { key: createSecretKey(raw), bits };
}
