// Files the API server writes into its data dir, which several replicas may share: written under a
// temporary name of their own (pid and random: containers sharing the dir may all be pid 1) and
// renamed into place, so a reader never sees half a file. The lock file under which one of them
// generates what the others then read is src/lock-file.ts. `atrest verify --textfile` writes with
// it too.
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';

/** A temporary name next to `path` that no other process picks (pid and random). */
export function tempPathFor(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Writes `text` to `path` (mode `mode`) under a temporary name in the same directory, then renames; the temporary file is not left behind on failure. */
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
