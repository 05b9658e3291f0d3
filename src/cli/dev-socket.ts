// Where `atrest dev` serves its KMS plugin (issue #20 §3). The default is `<data-dir>/kms.sock`; a
// UNIX socket path is at most 107 bytes on Linux (sun_path), so under a long directory the socket
// goes to a private directory instead — `$XDG_RUNTIME_DIR/atrest-<hash>/` when that is set (the
// per-user runtime directory systemd makes, 0700), else `<tmpdir>/atrest-<uid>-<hash>/` — created
// 0700 and used only if it is a real directory of this user that nobody else can enter. The hash is
// of the data directory, so each data dir keeps its own socket across restarts. `--kms-socket`
// chooses the path outright.
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { MAX_SOCKET_PATH_BYTES } from '../plugin/listen-address.js';
import { ToolUsageError } from './engine-options.js';

export const DEV_SOCKET_FILE = 'kms.sock';

export interface DevSocket {
  path: string;
  /** Why the default place was not used (for the log and the startup lines); undefined when it was. */
  fallbackReason?: string;
}

function fits(path: string): boolean {
  return Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES;
}

/** A private directory for the socket: made 0700, refused when it is anything but this user's own 0700 directory. */
function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || st.isSymbolicLink() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) {
    throw new ToolUsageError(`${dir} is not a private directory of this user (a 0700 directory it owns); remove it or give --kms-socket`);
  }
}

export function chooseDevSocket(dataDir: string, options: { kmsSocket?: string; env?: NodeJS.ProcessEnv } = {}): DevSocket {
  if (options.kmsSocket !== undefined) {
    const path = resolve(options.kmsSocket);
    if (!fits(path)) throw new ToolUsageError(`--kms-socket ${path}: ${Buffer.byteLength(path)} bytes, longer than a UNIX socket path may be (${MAX_SOCKET_PATH_BYTES})`);
    return { path };
  }
  const preferred = join(dataDir, DEV_SOCKET_FILE);
  if (fits(preferred)) return { path: preferred };
  const env = options.env ?? process.env;
  const hash = createHash('sha256').update(dataDir).digest('hex').slice(0, 12);
  const runtime = env['XDG_RUNTIME_DIR'];
  const dir = runtime && isAbsolute(runtime) ? join(runtime, `atrest-${hash}`) : join(tmpdir(), `atrest-${process.getuid?.() ?? 'user'}-${hash}`);
  const path = join(dir, DEV_SOCKET_FILE);
  if (!fits(path)) {
    throw new ToolUsageError(`the KMS socket path ${preferred} is too long for a UNIX socket (${MAX_SOCKET_PATH_BYTES} bytes), and so is ${path}: give --kms-socket with a shorter path`);
  }
  privateDir(dir);
  return {
    path,
    fallbackReason: `${preferred} is ${Buffer.byteLength(preferred)} bytes, longer than a UNIX socket path may be (${MAX_SOCKET_PATH_BYTES})`,
  };
}
