// Files the API server writes into its data dir, which several replicas may share: written under a
// temporary name of their own (pid and random: containers sharing the dir may all be pid 1) and
// renamed into place, so a reader never sees half a file.
import { randomBytes } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';

export async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, text, { mode, flag: 'wx' });
  await rename(tmp, path);
}
