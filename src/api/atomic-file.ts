// Files the API server writes into its data dir, which several replicas may share: written under a
// temporary name of their own (pid and random: containers sharing the dir may all be pid 1) and
// renamed into place, so a reader never sees half a file; and the lock file under which one of
// them generates what the others then read. `atrest verify --textfile` writes with it too.
import { randomBytes } from 'node:crypto';
import { open, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** Writes `text` to `path` (mode `mode`) under a temporary name in the same directory, then renames; the temporary file is not left behind on failure. */
/** A temporary name next to `path` that no other process picks (pid and random). */
export function tempPathFor(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

export async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = tempPathFor(path);
  try {
    await writeFile(tmp, text, { mode, flag: 'wx' });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** A lock older than this was left by a process that died while holding it (generating takes well under a second). */
const STALE_LOCK_MS = 30_000;
/** How long a process waits for another one's lock before giving up. */
const LOCK_WAIT_MS = 60_000;

/**
 * Runs `fn` while holding the lock file `lock` (created with O_EXCL, holding the pid). Another
 * holder is waited for; a lock older than STALE_LOCK_MS is a leftover of a crashed process and is
 * removed. After LOCK_WAIT_MS, fails with `timeoutError(seconds waited)`.
 */
export async function withLockFile<T>(lock: string, fn: () => Promise<T>, timeoutError: (waitedS: number) => Error): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const handle = await open(lock, 'wx', 0o600);
      try {
        await handle.writeFile(`${process.pid}\n`);
      } catch (err) {
        await unlink(lock).catch(() => undefined); // not left behind to make the next start wait
        throw err;
      } finally {
        await handle.close();
      }
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
    }
    const seen = await stat(lock).catch(() => undefined);
    if (seen && Date.now() - seen.mtimeMs > STALE_LOCK_MS) {
      // Remove the stale lock only if it is still the file judged stale: another waiter may have
      // taken it over meanwhile, and its fresh lock must not be removed.
      const now = await stat(lock).catch(() => undefined);
      if (now && now.ino === seen.ino && now.mtimeMs === seen.mtimeMs) await unlink(lock).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) throw timeoutError(LOCK_WAIT_MS / 1000);
    await sleep(50);
  }
  try {
    return await fn();
  } finally {
    await unlink(lock).catch(() => undefined);
  }
}
