// The plugin's listening UNIX socket. A filesystem socket is bound inside a fresh 0700 directory
// next to the target, chmod'ed to 0600 there, and renamed into place: nobody else can connect at
// any moment, and no process-wide umask is touched. An existing socket file is replaced only when
// nothing answers on it (a stale file left by a crash); a live one is an error, and so is a path
// that is not a socket. Abstract sockets (`@name`) have no file, no mode and no stale state.
import net from 'node:net';
import { chmod, lstat, mkdtemp, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PluginError } from './errors.js';
import { MAX_SOCKET_PATH_BYTES, type ListenAddress } from './listen-address.js';

export interface UnixListener {
  readonly address: ListenAddress;
  /**
   * Stops accepting connections and removes the socket file (only if it is still the one we
   * created). Open connections stay open; `closed` resolves when they have all ended.
   */
  stop(): Promise<void>;
  readonly closed: Promise<void>;
}

type SocketState = 'absent' | 'stale' | 'live';

/** Connects to `netPath` to learn whether a process answers there. */
export function probeSocket(netPath: string, timeoutMs = 1000): Promise<SocketState> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: netPath });
    const done = (state: SocketState | Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (state instanceof Error) reject(state);
      else resolve(state);
    };
    // A peer that accepts but is too slow to finish the handshake still owns the socket.
    const timer = setTimeout(() => done('live'), timeoutMs);
    socket.once('connect', () => done('live'));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') done('stale');
      else if (err.code === 'ENOENT') done('absent');
      else done(err);
    });
  });
}

function inUse(address: ListenAddress): PluginError {
  const what = address.abstract ? `abstract socket @${address.path}` : `socket ${address.path}`;
  return new PluginError('PLUGIN_SOCKET_IN_USE', `another process is serving on ${what}; stop it first or choose another --listen`);
}

function listen(server: net.Server, netPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ path: netPath, exclusive: true }, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
}

async function existingState(address: ListenAddress): Promise<SocketState> {
  let info;
  try {
    info = await lstat(address.path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw new PluginError('PLUGIN_SOCKET_FAILED', `cannot inspect ${address.path}: ${(err as Error).message}`, { cause: err });
  }
  if (!info.isSocket()) {
    throw new PluginError('PLUGIN_SOCKET_FAILED', `${address.path} exists and is not a socket; refusing to replace it`);
  }
  try {
    return await probeSocket(address.netPath);
  } catch (err) {
    throw new PluginError('PLUGIN_SOCKET_FAILED', `cannot probe existing socket ${address.path}: ${(err as Error).message}`, { cause: err });
  }
}

function closedPromise(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.once('close', () => resolve()));
}

/** Binds the socket and hands each accepted connection to `onConnection`. */
export async function listenUnix(address: ListenAddress, onConnection: (socket: net.Socket) => void): Promise<UnixListener> {
  const server = net.createServer({ pauseOnConnect: false }, onConnection);
  const closed = closedPromise(server);
  if (address.abstract) {
    try {
      await listen(server, address.netPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw inUse(address);
      throw new PluginError('PLUGIN_SOCKET_FAILED', `cannot listen on abstract socket @${address.path}: ${(err as Error).message}`, { cause: err });
    }
    let stopped = false;
    return {
      address,
      closed,
      async stop() {
        if (stopped) return;
        stopped = true;
        server.close();
      },
    };
  }
  if ((await existingState(address)) === 'live') throw inUse(address);
  const identity = await bindFileSocket(server, address);
  let stopped = false;
  return {
    address,
    closed,
    async stop() {
      if (stopped) return;
      stopped = true;
      server.close();
      // Remove the file only if it is still ours: a successor may already have replaced it.
      try {
        const now = await stat(address.path);
        if (now.dev === identity.dev && now.ino === identity.ino) await unlink(address.path);
      } catch {
        // already gone
      }
    },
  };
}

async function bindFileSocket(server: net.Server, address: ListenAddress): Promise<{ dev: number; ino: number }> {
  const dir = dirname(address.path);
  let tmpDir: string;
  try {
    tmpDir = await mkdtemp(join(dir, `.${basename(address.path).slice(0, 8)}-`));
  } catch (err) {
    throw new PluginError('PLUGIN_SOCKET_FAILED', `cannot create a private directory in ${dir} for socket ${address.path}: ${(err as Error).message}`, { cause: err });
  }
  const tmpPath = join(tmpDir, 's');
  try {
    if (Buffer.byteLength(tmpPath) <= MAX_SOCKET_PATH_BYTES) {
      await listen(server, tmpPath);
      await chmod(tmpPath, 0o600);
      // Re-check right before taking the name over: a plugin started meanwhile keeps it.
      if ((await existingState(address)) === 'live') {
        server.close();
        throw inUse(address);
      }
      await rename(tmpPath, address.path);
    } else {
      // The private directory's path would not fit in sun_path: bind in place (the stale file, if
      // any, was probed above) and chmod at once. The socket is created with the process umask,
      // which (write bit) is what decides whether others can connect in between.
      await rm(address.path, { force: true });
      await listen(server, address.path);
      await chmod(address.path, 0o600);
    }
    const info = await stat(address.path);
    return { dev: info.dev, ino: info.ino };
  } catch (err) {
    if (server.listening) server.close();
    if (err instanceof PluginError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw inUse(address);
    throw new PluginError('PLUGIN_SOCKET_FAILED', `cannot listen on socket ${address.path}: ${(err as Error).message}`, { cause: err });
  } finally {
    await rm(tmpPath, { force: true }).catch(() => undefined);
    await rmdir(tmpDir).catch(() => undefined);
  }
}
