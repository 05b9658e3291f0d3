// Real disks that fail, for tests of what a store does on them (issue #20 §3): a small tmpfs that
// fills up, a read-only bind mount, and a "failing disk" (ext4 with errors=remount-ro on a loop
// device whose backing file sits on a tmpfs too small for it: once the tmpfs is full the device
// returns I/O errors, ext4 aborts its journal and remounts itself read-only, as a dying disk does).
// Needs root (mount, losetup); `mountSupport()` says why not when it cannot.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Undefined when mounts work here, else why not (the test is skipped with that reason). */
export function mountSupport(dir: string): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to mount a tmpfs';
  const probe = join(dir, 'mount-probe');
  mkdirSync(probe, { recursive: true });
  try {
    run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe]);
    run('umount', [probe]);
    return undefined;
  } catch (err) {
    return `mount is not permitted here: ${(err as Error).message.split('\n')[0]}`;
  }
}

/** A tmpfs of `bytes` at `dir` (created). */
export function mountTmpfs(dir: string, bytes: number): void {
  mkdirSync(dir, { recursive: true });
  run('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0700`, 'tmpfs', dir]);
}

/** `src` again at `dst`, read-only. */
export function bindReadOnly(src: string, dst: string): void {
  mkdirSync(dst, { recursive: true });
  run('mount', ['--bind', src, dst]);
  run('mount', ['-o', 'remount,ro,bind', dst]);
}

/** Unmounts (lazily: a process that still has a file open does not keep the test from cleaning up). */
export function unmount(dir: string): void {
  try {
    run('umount', ['-l', dir]);
  } catch {
    // not mounted
  }
}

/** Takes `bytes` of the file system of `dir` with a file `name` (zeros); returns its path. */
export function fillWith(dir: string, name: string, bytes: number): string {
  const path = join(dir, name);
  writeFileSync(path, Buffer.alloc(bytes));
  return path;
}

/** Takes every free byte of the file system of `dir` (a file `name`, written until ENOSPC). */
export function fillUp(dir: string, name: string): void {
  const fd = openSync(join(dir, name), 'a');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) {
      try {
        writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        fillRest(fd);
        return;
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** The last partial block. */
function fillRest(fd: number): void {
  const one = Buffer.alloc(1);
  for (;;) {
    try {
      writeSync(fd, one);
    } catch {
      return;
    }
  }
}

export interface FailingDisk {
  /** Where the ext4 file system is mounted. */
  mountPoint: string;
  cleanup(): void;
}

/**
 * ext4 (errors=remount-ro) on a loop device over a sparse 32 MiB image kept on a tmpfs of
 * `backingBytes`: writes beyond `backingBytes` of real data fail with EIO, then EROFS.
 */
export function failingDisk(dir: string, backingBytes: number): FailingDisk {
  const backing = join(dir, 'backing');
  const mountPoint = join(dir, 'disk');
  mountTmpfs(backing, backingBytes);
  const image = join(backing, 'disk.img');
  run('truncate', ['-s', '32M', image]);
  run('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', image]);
  mkdirSync(mountPoint, { recursive: true });
  const loop = run('losetup', ['--find', '--show', image]).trim();
  try {
    run('mount', ['-t', 'ext4', '-o', 'errors=remount-ro', loop, mountPoint]);
  } catch (err) {
    run('losetup', ['-d', loop]);
    unmount(backing);
    throw err;
  }
  return {
    mountPoint,
    cleanup() {
      unmount(mountPoint);
      try {
        run('losetup', ['-d', loop]);
      } catch {
        // already detached (the lazy unmount releases it when the last file closes)
      }
      unmount(backing);
    },
  };
}
