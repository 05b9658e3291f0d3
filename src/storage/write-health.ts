// Can the store write? Both backends keep their last lasting write failure (NO_SPACE, READ_ONLY,
// IO_ERROR) here until a write succeeds, and add a cheap probe of their own (the embedded store: its
// directory is writable and has room; etcd: no NOSPACE or CORRUPT alarm). `Store.writable()` runs
// both; the API server mounts it as the `storage-writable` readiness check, so a load balancer stops
// sending writes to a server whose store cannot take them.
import { constants } from 'node:fs';
import { access, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { classifyDiskError, MIN_FREE_BYTES } from './disk-errors.js';
import { isLastingWriteFailure, StoreError } from './errors.js';

/** A failure older than this no longer fails the check by itself once the backend's probe passes. */
const FAILURE_MEMORY_MS = 30_000;

export class WriteHealth {
  private failure: { err: StoreError; at: number } | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  /** Remembers `err` when it is a lasting write failure. */
  record(err: unknown): void {
    if (isLastingWriteFailure(err)) this.failure = { err, at: this.now() };
  }

  succeeded(): void {
    this.failure = undefined;
  }

  /**
   * Rejects with the last lasting failure while it is recent, or with what `probe` finds; a failure
   * remembered longer than FAILURE_MEMORY_MS is forgotten once the probe passes (nothing may have
   * been written since: a server taken out of rotation gets no writes to prove itself with).
   */
  async check(probe: () => Promise<void>): Promise<void> {
    const f = this.failure;
    if (f && this.now() - f.at < FAILURE_MEMORY_MS) throw f.err;
    await probe();
    if (this.failure === f) this.failure = undefined;
  }
}

/** The embedded store's probe: its directory and file are writable and the file system has room. */
export async function probeStoreFile(file: string): Promise<void> {
  const dir = dirname(file);
  try {
    await access(dir, constants.W_OK);
    await access(file, constants.W_OK);
  } catch (err) {
    const c = classifyDiskError(err);
    throw new StoreError(c?.problem ?? 'READ_ONLY', `the embedded store ${file} cannot be written: ${c?.cause ?? (err as Error).message}`, { cause: err });
  }
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  if (free < MIN_FREE_BYTES) {
    throw new StoreError('NO_SPACE', `the embedded store ${file} cannot be written: ${free} bytes free on its file system (ENOSPC)`);
  }
}
