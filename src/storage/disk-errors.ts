// What a failed file or SQLite operation says about the disk under a data directory: full, read-only
// (or not ours to write), or failing. Used for the embedded store's write errors (StoreError codes
// NO_SPACE, READ_ONLY, IO_ERROR instead of a retryable UNAVAILABLE) and for `atrest serve`'s start-up
// on a data directory it cannot write: the message says what is wrong and what to do, instead of a
// bare `EROFS: read-only file system, open '…'`.
import { existsSync, mkdirSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { AtrestError } from '../errors.js';

export type DiskProblem = 'NO_SPACE' | 'READ_ONLY' | 'IO_ERROR';

export interface DiskErrorClass {
  problem: DiskProblem;
  /** What went wrong, with the system's code: `no space left on the device (ENOSPC)`. */
  cause: string;
}

/** The class of an errno (`ENOSPC`) or better-sqlite3 (`SQLITE_FULL`, `SQLITE_IOERR_WRITE`) error; undefined for others. */
export function classifyDiskError(err: unknown): DiskErrorClass | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  if (code === 'ENOSPC' || code === 'SQLITE_FULL') return { problem: 'NO_SPACE', cause: `no space left on the device (${code})` };
  if (code === 'EDQUOT') return { problem: 'NO_SPACE', cause: `the disk quota is exhausted (${code})` };
  if (code === 'EROFS' || code.startsWith('SQLITE_READONLY')) return { problem: 'READ_ONLY', cause: `the file system is read-only (${code})` };
  if (code === 'EACCES' || code === 'EPERM' || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH') return { problem: 'READ_ONLY', cause: `permission denied (${code})` };
  if (code === 'SQLITE_CANTOPEN') return { problem: 'READ_ONLY', cause: `its files cannot be opened or created (${code})` };
  if (code === 'EIO' || code.startsWith('SQLITE_IOERR')) return { problem: 'IO_ERROR', cause: `the disk reported an I/O error (${code})` };
  return undefined;
}

/**
 * An I/O error on a file system with no room left is a full disk: SQLite reports the -shm file it
 * could not grow on a full tmpfs as SQLITE_IOERR_SHMSIZE, not SQLITE_FULL.
 */
export function refineByFreeSpace(c: DiskErrorClass, dir: string): DiskErrorClass {
  if (c.problem !== 'IO_ERROR') return c;
  try {
    const fs = statfsSync(dir);
    if (fs.bavail * fs.bsize < MIN_FREE_BYTES) return { problem: 'NO_SPACE', cause: c.cause.replace('the disk reported an I/O error', 'no space left on the device') };
  } catch {
    // the file system cannot even be asked: keep the I/O error
  }
  return c;
}

/** Below this much free space a file system counts as full (a few SQLite pages and WAL frames). */
export const MIN_FREE_BYTES = 64 * 1024;

/** What an operator does about `problem` for the directory `dir` given by `flag`. */
export function diskAdvice(problem: DiskProblem, dir: string, flag = '--data-dir'): string {
  switch (problem) {
    case 'NO_SPACE':
      return `free space on the file system of ${dir} (or move ${flag} to a larger one), then retry; nothing was written`;
    case 'READ_ONLY':
      return `make ${dir} writable by the user running atrest (remount its file system read-write, or fix its owner and mode), or point ${flag} at a writable directory`;
    case 'IO_ERROR':
      return `check the disk under ${dir} (dmesg, smartctl); if the store file is damaged, restore it from a backup or an etcd snapshot`;
  }
}

/** `atrest serve` could not prepare its data directory: what, why, and what to do. Code DATA_DIR_<problem>. */
export class DataDirError extends AtrestError {
  constructor(readonly problem: DiskProblem, message: string, cause: unknown) {
    super(`DATA_DIR_${problem}`, message, { cause });
  }
}

/**
 * `err` from `action` (e.g. `open the embedded store`; `create`: making the directory itself) on the data directory `dir` as a DataDirError
 * naming the cause and the remedy; other errors are returned unchanged.
 */
export function dataDirError(err: unknown, dir: string, action: string): unknown {
  if (err instanceof DataDirError) return err;
  const found = classifyDiskError(err) ?? classifyDiskError((err as { cause?: unknown } | null)?.cause);
  if (!found) return err;
  const c = refineByFreeSpace(found, dir);
  const what = action === 'create' ? `cannot create the data directory ${dir} (--data-dir)` : `cannot ${action} in the data directory ${dir} (--data-dir)`;
  return new DataDirError(c.problem, `${what}: ${c.cause}. To fix: ${diskAdvice(c.problem, dir)}`, err);
}

/** Runs `fn` (a step that writes into the data directory), turning disk errors into a DataDirError. */
export async function inDataDir<T>(dir: string, action: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw dataDirError(err, dir, action);
  }
}

/**
 * Creates the data directory (0700). A recursive mkdir under a read-only file system reports ENOENT
 * (node's mkdirp), so the last step is retried plainly to get the real reason (EROFS, EACCES).
 */
export function makeDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    let real = err;
    if ((err as { code?: unknown }).code === 'ENOENT' && existsSync(dirname(dir))) {
      try {
        mkdirSync(dir, { mode: 0o700 });
      } catch (again) {
        real = again;
      }
    }
    throw dataDirError(real, dir, 'create');
  }
}
