// The local backend's key file: a small JSON document holding one or more AES-256 KEK versions.
//
//   {
//     "format": "atrest-local-kek/v1",
//     "versions": [
//       { "version": 1, "id": "<16 hex: 8 random bytes>", "created": "<RFC 3339>", "key": "<base64 of 32 bytes>" },
//       { "version": 2, ... }                      (the highest version is the current one)
//     ]
//   }
//
// A retired version (`atrest rotate` retires versions nothing needs any more) carries
// `"retired": "<RFC 3339>"` and `"purgeAfter": "<RFC 3339>"`: it no longer unwraps, `restore-key`
// brings it back until purgeAfter, and the first rewrite of the file after that drops it. The
// highest version is never retired. Older atrest versions ignore both fields.
//
// `id` is random and stored with the key: never derived from key material. The file is written
// atomically (temp file with mode 0600, fsync, rename; init uses link so an existing file is never
// replaced), rewrites hold `<file>.lock` so concurrent ones never undo each other, and the file is
// refused when group or others may read or write it.
import { createHash, randomBytes } from 'node:crypto';
import { link, open, realpath, rename, unlink } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname } from 'node:path';
import { withLockFile } from '../../lock-file.js';
import { BackendError } from '../backend.js';

export const KEY_FILE_FORMAT = 'atrest-local-kek/v1';
export const KEK_BYTES = 32;
const MAX_KEY_FILE_BYTES = 1 << 20;
const MAX_VERSION = 0xffffffff;

export interface KekVersion {
  version: number;
  /** 16 lowercase hex digits. */
  id: string;
  created: string;
  /** 32 bytes of key material (never logged, never in errors). */
  key: Buffer;
  /** RFC 3339 time of the retirement; absent while the version unwraps. */
  retired?: string;
  /** RFC 3339; with `retired`: when the version may be dropped from the file. */
  purgeAfter?: string;
}

export interface KeyFileContents {
  versions: KekVersion[];
}

/** Identity of the file on disk, to notice a rewrite cheaply. */
export interface KeyFileStamp {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  /** SHA-256 of the file bytes (to ignore rewrites that change nothing). */
  sha256: string;
}

/** The key file changed between our read and our rename: nothing was written; reading again and retrying is safe. */
export class KeyFileChangedError extends BackendError {
  constructor(path: string) {
    super('CONFIG', `key file ${path}: changed while it was being rewritten (another rotation?); nothing written, run it again`);
  }
}

export function keyIdOf(v: Pick<KekVersion, 'version' | 'id'>): string {
  return `local:v${v.version}:${v.id}`;
}

function fail(path: string, message: string, code: 'CONFIG' | 'KEY_NOT_FOUND' = 'CONFIG', cause?: unknown): BackendError {
  return new BackendError(code, `key file ${path}: ${message}`, cause === undefined ? undefined : { cause });
}

/** Refuses a key file others could read or change: what the whole scheme's secrecy rests on. */
export function checkKeyFileMode(path: string, mode: number): void {
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new BackendError('CONFIG', `key file ${path} has mode ${octal}: it must not be accessible by group or others (chmod 600 ${path})`);
  }
}

/** Reads, mode-checks and parses the key file (mode checked on the opened file, not the name). */
export async function readKeyFile(path: string): Promise<{ contents: KeyFileContents; stamp: KeyFileStamp }> {
  let handle;
  try {
    // Symbolic links are followed (e.g. a mounted Secret's ..data link); the mode that counts is
    // the opened file's.
    handle = await open(path, constants.O_RDONLY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw fail(path, 'does not exist (create it with `atrest kms-plugin init-key --backend local --key-file FILE`)', 'CONFIG', err);
    throw fail(path, `cannot be opened: ${(err as Error).message}`, 'CONFIG', err);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw fail(path, 'is not a regular file');
    checkKeyFileMode(path, info.mode);
    if (info.size > MAX_KEY_FILE_BYTES) throw fail(path, `is ${info.size} bytes, more than a key file can be`);
    const bytes = await handle.readFile();
    const stamp = { dev: info.dev, ino: info.ino, size: info.size, mtimeMs: info.mtimeMs, sha256: createHash('sha256').update(bytes).digest('hex') };
    return { contents: parseKeyFile(path, bytes), stamp };
  } finally {
    await handle.close();
  }
}

export function parseKeyFile(path: string, bytes: Buffer): KeyFileContents {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    // The parser's message may quote file content (key material): do not pass it on.
    throw fail(path, 'is not valid JSON');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw fail(path, 'must hold a JSON object');
  const top = doc as Record<string, unknown>;
  if (top['format'] !== KEY_FILE_FORMAT) throw fail(path, `"format" must be "${KEY_FILE_FORMAT}"`);
  const list = top['versions'];
  if (!Array.isArray(list) || list.length === 0) throw fail(path, '"versions" must be a non-empty array');
  const seenVersions = new Set<number>();
  const seenIds = new Set<string>();
  const versions = list.map((entry: unknown, i): KekVersion => {
    const field = `versions[${i}]`;
    if (typeof entry !== 'object' || entry === null) throw fail(path, `${field} must be an object`);
    const e = entry as Record<string, unknown>;
    const version = e['version'];
    if (typeof version !== 'number' || !Number.isInteger(version) || version < 1 || version > MAX_VERSION) {
      throw fail(path, `${field}.version must be an integer from 1 to ${MAX_VERSION}`);
    }
    if (seenVersions.has(version)) throw fail(path, `${field}.version ${version} appears twice`);
    seenVersions.add(version);
    const id = e['id'];
    if (typeof id !== 'string' || !/^[0-9a-f]{16}$/.test(id)) throw fail(path, `${field}.id must be 16 lowercase hex digits`);
    if (seenIds.has(id)) throw fail(path, `${field}.id appears twice`);
    seenIds.add(id);
    const created = typeof e['created'] === 'string' ? e['created'] : '';
    const retirement = parseRetirement(path, field, e);
    const keyText = e['key'];
    const key = typeof keyText === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(keyText) ? Buffer.from(keyText, 'base64') : undefined;
    if (!key || key.length !== KEK_BYTES) throw fail(path, `${field}.key must be ${KEK_BYTES} bytes in standard base64`);
    return { version, id, created, key, ...retirement };
  });
  versions.sort((a, b) => a.version - b.version);
  const newest = versions[versions.length - 1];
  if (newest?.retired !== undefined) throw fail(path, `version ${newest.version}, the highest, is retired: the current version must not be (restore it, or add a version with rotate-key)`);
  return { versions };
}

/** `retired` and `purgeAfter`: both RFC 3339 times, or neither. */
function parseRetirement(path: string, field: string, e: Record<string, unknown>): Pick<KekVersion, 'retired' | 'purgeAfter'> {
  const { retired, purgeAfter } = e;
  if (retired === undefined && purgeAfter === undefined) return {};
  const isTime = (v: unknown): v is string => typeof v === 'string' && Number.isFinite(Date.parse(v));
  if (!isTime(retired)) throw fail(path, `${field}.retired must be an RFC 3339 time`);
  if (!isTime(purgeAfter)) throw fail(path, `${field}.purgeAfter must be an RFC 3339 time (a retired version needs both)`);
  return { retired, purgeAfter };
}

function serialize(contents: KeyFileContents): Buffer {
  const doc = {
    format: KEY_FILE_FORMAT,
    versions: contents.versions.map((v) => ({
      version: v.version, id: v.id, created: v.created,
      ...(v.retired !== undefined ? { retired: v.retired, purgeAfter: v.purgeAfter } : {}),
      key: v.key.toString('base64'),
    })),
  };
  return Buffer.from(JSON.stringify(doc, null, 2) + '\n', 'utf8');
}

export function newVersion(version: number): KekVersion {
  return { version, id: randomBytes(8).toString('hex'), created: new Date().toISOString(), key: randomBytes(KEK_BYTES) };
}

async function writeTemp(path: string, bytes: Buffer): Promise<string> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await handle.chmod(0o600); // whatever the umask
    await handle.writeFile(bytes);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await handle.close();
  return tmp;
}

async function syncDir(path: string): Promise<void> {
  const dir = await open(dirname(path), constants.O_RDONLY);
  try {
    await dir.sync();
  } catch {
    // some filesystems refuse fsync on directories; the rename itself is still atomic
  } finally {
    await dir.close();
  }
}

/** Creates the key file with one version; refuses when the file exists. */
export async function createKeyFile(path: string, first: KekVersion): Promise<void> {
  let tmp: string;
  try {
    tmp = await writeTemp(path, serialize({ versions: [first] }));
  } catch (err) {
    throw fail(path, `cannot be written: ${(err as Error).message}`, 'CONFIG', err);
  }
  try {
    await link(tmp, path); // fails with EEXIST instead of replacing
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw fail(path, 'already exists; use rotate-key to add a version', 'CONFIG', err);
    throw fail(path, `cannot be created: ${(err as Error).message}`, 'CONFIG', err);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  await syncDir(path);
}

/**
 * Rewrites the key file with `change(current)`; nothing is written when it returns undefined.
 * Retired versions past their purgeAfter are dropped from whatever is written. Rewrites take turns
 * through a lock file; if the file still changed between our read and our rename (edited by hand,
 * or by an atrest without the lock), nothing is written: with `attempts` > 1 the change is made
 * again on the new content (for changes that mean the same whatever came first: retire, restore,
 * a rotation that is due), else KeyFileChangedError tells the caller to run it again. Key material
 * read here is zeroed before returning (keep the Buffers of versions you add: the caller zeroes those).
 */
export async function updateKeyFile(givenPath: string, change: (current: KeyFileContents) => KeyFileContents | undefined, now = Date.now(), attempts = 1): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await updateOnce(givenPath, change, now);
    } catch (err) {
      if (!(err instanceof KeyFileChangedError) || attempt >= attempts) throw err;
    }
  }
}

/**
 * Runs `fn` holding `<path>.lock` (src/lock-file.ts: O_EXCL, so one process at a time): without it
 * two processes could both check the file unchanged and both rename, the later one silently undoing
 * the earlier one's change (a retirement, a rotation). A lock older than 10 s was left by a process
 * that died while rewriting and is broken; another's lock is waited for 5 s.
 */
function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${path}.lock`;
  return withLockFile(lock, fn, () => fail(path, `is being rewritten by another process (${lock} exists); nothing written, run it again`), {
    staleMs: 10_000,
    waitMs: 5_000,
    createError: (err) => fail(path, `cannot create the lock file ${lock}: ${(err as Error).message}`, 'CONFIG', err),
  });
}

async function updateOnce(givenPath: string, change: (current: KeyFileContents) => KeyFileContents | undefined, now: number): Promise<boolean> {
  // Rewrite the file a symbolic link points at, not the link.
  const path = await realpath(givenPath).catch(() => givenPath);
  return withLock(path, () => rewrite(path, change, now));
}

async function rewrite(path: string, change: (current: KeyFileContents) => KeyFileContents | undefined, now: number): Promise<boolean> {
  const { contents, stamp } = await readKeyFile(path);
  const read = contents.versions.map((v) => v.key);
  try {
    const next = change(contents);
    if (next === undefined) return false;
    const kept = { versions: next.versions.filter((v) => v.purgeAfter === undefined || Date.parse(v.purgeAfter) > now) };
    const tmp = await writeTemp(path, serialize(kept)).catch((err: unknown) => {
      throw fail(path, `cannot be written: ${(err as Error).message}`, 'CONFIG', err);
    });
    try {
      const again = await readKeyFile(path);
      for (const v of again.contents.versions) v.key.fill(0);
      if (again.stamp.sha256 !== stamp.sha256) throw new KeyFileChangedError(path);
      await rename(tmp, path);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await syncDir(path);
    return true;
  } finally {
    for (const key of read) key.fill(0);
  }
}

/** Adds `next(existing)` as a new version (rotate-key); see updateKeyFile. */
export async function appendKeyVersion(givenPath: string, next: (current: KeyFileContents) => KekVersion): Promise<KekVersion> {
  let added: KekVersion | undefined;
  await updateKeyFile(givenPath, (current) => {
    added = next(current);
    return { versions: [...current.versions, added] };
  });
  return added as KekVersion;
}
