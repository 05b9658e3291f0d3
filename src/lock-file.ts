// A lock file between processes: created with O_EXCL (one holder at a time), holding the holder's
// pid, removed when the work is done; a lock older than the stale time is a leftover of a process
// that died holding it and is broken. The API server's data dir (several replicas may generate the
// PKI or token file at once) and the local KMS backend's key file (concurrent rewrites) use it.
// Leaf module like errors.ts: imports nothing of ours, so every process kind may use it.
import { constants } from 'node:fs';
import { open, stat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LockFileOptions {
  /** A lock older than this (by mtime) was left by a process that died holding it. Default 30 s. */
  staleMs?: number;
  /** How long to wait for another holder before failing with `timeoutError`. Default 60 s. */
  waitMs?: number;
  /** The error for a lock file that cannot be created or written (anything but "exists"); default: the error as it is. */
  createError?: (err: unknown) => Error;
}

const LOCK_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Creates the lock file; false when it exists. Never leaves a lock file behind when writing the pid fails. */
async function tryCreate(lock: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(lock, LOCK_FLAGS, 0o600);
  } catch (err) {
    if ((err as { code?: string }).code === 'EEXIST') return false;
    throw err;
  }
  try {
    await handle.writeFile(`${process.pid}\n`);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(lock).catch(() => undefined); // not left behind to make the next one wait
    throw err;
  }
  await handle.close();
  return true;
}

/**
 * Runs `fn` while holding the lock file `lock`. Another holder is waited for (polling every 10 to
 * 50 ms, so waiters do not retry in step); a lock older than `staleMs` is removed, but only if it is
 * still the very file judged stale (two waiters may both judge it so, and the second must not remove
 * the lock the first has just taken). After `waitMs`, fails with `timeoutError(seconds waited)`.
 */
export async function withLockFile<T>(lock: string, fn: () => Promise<T>, timeoutError: (waitedS: number) => Error, options: LockFileOptions = {}): Promise<T> {
  const staleMs = options.staleMs ?? 30_000;
  const waitMs = options.waitMs ?? 60_000;
  const deadline = Date.now() + waitMs;
  for (;;) {
    let created: boolean;
    try {
      created = await tryCreate(lock);
    } catch (err) {
      throw options.createError ? options.createError(err) : err;
    }
    if (created) break;
    const seen = await stat(lock).catch(() => undefined);
    if (seen && Date.now() - seen.mtimeMs > staleMs) {
      const now = await stat(lock).catch(() => undefined);
      if (now && now.ino === seen.ino && now.dev === seen.dev && now.mtimeMs === seen.mtimeMs) await unlink(lock).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) throw timeoutError(waitMs / 1000);
    await sleep(10 + Math.random() * 40);
  }
  try {
    return await fn();
  } finally {
    await unlink(lock).catch(() => undefined);
  }
}
