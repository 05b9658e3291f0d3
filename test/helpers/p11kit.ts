// A real out-of-process HSM for tests: a SoftHSM token exported by `p11-kit server` (Debian's
// p11-kit) on a UNIX socket, reached through p11-kit's client module (p11-kit-modules) with
// P11_KIT_SERVER_ADDRESS. The server forks one p11-kit-remote process per client connection, in its
// own process group: freeze()/stop() signal the whole group, so connections already open freeze and
// die with it, as a networked HSM's would.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { captureLog } from './test-log.js';
import type { SoftHsm } from './softhsm.js';

/** Debian's p11-kit-modules puts the client module here (multiarch directory). */
export const P11KIT_CLIENT_MODULE = [`/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/pkcs11/p11-kit-client.so`].find((p) => existsSync(p))
  ?? '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so';

export interface P11KitServer {
  /** `unix:path=…`, what P11_KIT_SERVER_ADDRESS must hold for the client module. */
  readonly address: string;
  readonly socket: string;
  /** Environment for a client process (P11_KIT_SERVER_ADDRESS). */
  readonly env: Record<string, string>;
  /** SIGSTOP to the server and its per-connection processes: sockets stay open, nothing answers. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** SIGKILL to the whole group (frozen or not); connections break. Waits until the server is gone. */
  stop(): Promise<void>;
  /** Starts it again on the same socket. */
  start(): Promise<void>;
}

/** Exports `hsm`'s token `tokenLabel` over a socket at `socket` (removed first if left over). */
export async function startP11KitServer(hsm: SoftHsm, tokenLabel: string, socket: string): Promise<P11KitServer> {
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const group = (signal: NodeJS.Signals): void => {
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(-child.pid, signal);
  };
  const start = async (): Promise<void> => {
    await rm(socket, { force: true });
    const c = spawn('p11-kit', ['server', '--foreground', '--name', socket, '--provider', hsm.modulePath, `pkcs11:token=${tokenLabel}`], {
      env: { ...process.env, ...hsm.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    child = c;
    exited = new Promise((resolve) => c.once('exit', () => resolve()));
    captureLog('p11-kit-server', c.stderr!);
    // It prints `P11_KIT_SERVER_ADDRESS=unix:path=…; export …` once it listens.
    await new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: c.stdout! });
      lines.on('line', (line) => { if (line.startsWith('P11_KIT_SERVER_ADDRESS=')) resolve(); });
      c.once('exit', (code, signal) => reject(new Error(`p11-kit server exited (${code ?? signal}) before listening`)));
      c.once('error', reject);
    });
  };
  await start();
  const address = `unix:path=${socket}`;
  return {
    address,
    socket,
    env: { P11_KIT_SERVER_ADDRESS: address },
    freeze: () => group('SIGSTOP'),
    thaw: () => group('SIGCONT'),
    stop: async () => {
      group('SIGKILL');
      await exited;
    },
    start,
  };
}
