// Flags of the key hierarchy (used with the remote backends, kmip and pkcs11) and their checks. Like
// every plugin flag each has an ATREST_… environment variable. Durations are Go durations (`90s`,
// `24h`), as kube-apiserver's own flags are written.
import { GoDurationError, parseGoDuration } from '../../config/go-duration.js';
import { BackendError, type BackendFlag, type BackendOptions } from '../backend.js';
import { AES_GCM_RANDOM_NONCE_LIMIT } from './local-kek.js';

export const DEFAULT_LOCAL_KEK_MAX_AGE = '24h';
export const DEFAULT_LOCAL_KEK_MAX_USES = '1000000';
export const DEFAULT_LOCAL_KEK_CACHE_SIZE = '1000';
export const DEFAULT_REMOTE_KEK_TIMEOUT = '10s';

export const hierarchyFlags: BackendFlag[] = [
  {
    flags: '--local-kek-max-age <duration>',
    description: 'kmip/pkcs11: make a new local KEK (one remote wrap) once the current one is this old; while the remote is unavailable the current one goes on',
    env: 'ATREST_LOCAL_KEK_MAX_AGE',
    defaultValue: DEFAULT_LOCAL_KEK_MAX_AGE,
  },
  {
    flags: '--local-kek-max-uses <n>',
    description: `kmip/pkcs11: make a new local KEK once the current one has sealed this many DEKs/seeds (at most ${AES_GCM_RANDOM_NONCE_LIMIT}, the AES-GCM bound that holds even during an outage)`,
    env: 'ATREST_LOCAL_KEK_MAX_USES',
    defaultValue: DEFAULT_LOCAL_KEK_MAX_USES,
  },
  {
    flags: '--local-kek-cache-size <n>',
    description: 'kmip/pkcs11: unwrapped local KEKs kept for Decrypt (a miss costs one remote unwrap)',
    env: 'ATREST_LOCAL_KEK_CACHE_SIZE',
    defaultValue: DEFAULT_LOCAL_KEK_CACHE_SIZE,
  },
  {
    flags: '--remote-kek-timeout <duration>',
    description: 'kmip/pkcs11: how long one call to the remote KEK may take before it counts as unavailable',
    env: 'ATREST_REMOTE_KEK_TIMEOUT',
    defaultValue: DEFAULT_REMOTE_KEK_TIMEOUT,
  },
];

export interface HierarchySettings {
  maxAgeMs: number;
  maxUses: number;
  cacheSize: number;
  remoteTimeoutMs: number;
  /** How often refresh() checks that the remote still unwraps the current local KEK (default 60 s). */
  verifyIntervalMs?: number;
  /** Seals per local KEK never exceeded (default 2^32; tests lower it). */
  hardMaxUses?: number;
}

function duration(flag: string, text: string, minMs: number): number {
  let ns: bigint;
  try {
    ns = parseGoDuration(text);
  } catch (err) {
    if (err instanceof GoDurationError) throw new BackendError('CONFIG', `${flag} ${JSON.stringify(text)}: ${err.message} (e.g. 90s, 30m, 24h)`);
    throw err;
  }
  const ms = Number(ns / 1_000_000n);
  if (ms < minMs) throw new BackendError('CONFIG', `${flag} must be at least ${minMs} ms, not ${JSON.stringify(text)}`);
  return ms;
}

function count(flag: string, text: string, max: number): number {
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || n < 1 || n > max) throw new BackendError('CONFIG', `${flag} must be a whole number from 1 to ${max}, not ${JSON.stringify(text)}`);
  return n;
}

/** Reads the hierarchy flags from commander's option values (camelCase keys), defaults filled in. */
export function readHierarchySettings(options: BackendOptions): HierarchySettings {
  return {
    maxAgeMs: duration('--local-kek-max-age', options['localKekMaxAge'] ?? DEFAULT_LOCAL_KEK_MAX_AGE, 1000),
    maxUses: count('--local-kek-max-uses', options['localKekMaxUses'] ?? DEFAULT_LOCAL_KEK_MAX_USES, AES_GCM_RANDOM_NONCE_LIMIT),
    cacheSize: count('--local-kek-cache-size', options['localKekCacheSize'] ?? DEFAULT_LOCAL_KEK_CACHE_SIZE, 1_000_000),
    remoteTimeoutMs: duration('--remote-kek-timeout', options['remoteKekTimeout'] ?? DEFAULT_REMOTE_KEK_TIMEOUT, 100),
  };
}
