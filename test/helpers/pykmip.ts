// A real KMIP server for tests: Debian's PyKMIP (`/usr/bin/pykmip-server`, run by /usr/bin/python3)
// on a free loopback port, with its own CA, server and client certificates made by openssl in a
// temporary directory. One server per test file; stop() kills it and removes nothing, cleanup()
// removes the directory.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';

const run = promisify(execFile);
const PYKMIP_SERVER = '/usr/bin/pykmip-server';

export interface ClientCredentials {
  caPath: string;
  certPath: string;
  keyPath: string;
}

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  client: ClientCredentials;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run('openssl', args, { cwd });
}

/** A P-256 CA in `dir` (files `<name>-ca.pem`, `<name>-ca.key`). */
export async function makeCa(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const key = path.join(dir, `${name}-ca.key`);
  const cert = path.join(dir, `${name}-ca.pem`);
  await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], dir);
  await openssl(
    ['req', '-x509', '-new', '-key', key, '-sha256', '-days', '2', '-subj', `/CN=${name} test CA`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', cert],
    dir,
  );
  await chmod(key, 0o600);
  return { cert, key };
}

/** A P-256 leaf certificate signed by `ca`: serverAuth with SAN IP 127.0.0.1, or clientAuth. */
export async function makeLeaf(dir: string, ca: { cert: string; key: string }, name: string, role: 'server' | 'client', cn: string): Promise<{ cert: string; key: string }> {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.pem`);
  const ext = path.join(dir, `${name}.ext`);
  await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], dir);
  await chmod(key, 0o600);
  await openssl(['req', '-new', '-key', key, '-subj', `/CN=${cn}`, '-out', csr], dir);
  await writeFile(
    ext,
    role === 'server'
      ? 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n'
      : 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\nextendedKeyUsage=clientAuth\n',
  );
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-sha256', '-extfile', ext, '-out', cert], dir);
  return { cert, key };
}

export async function makePki(dir: string): Promise<Pki> {
  const ca = await makeCa(dir, 'kmip');
  const server = await makeLeaf(dir, ca, 'server', 'server', '127.0.0.1');
  const client = await makeLeaf(dir, ca, 'client', 'client', 'atrest-kms-plugin');
  return { dir, caCert: ca.cert, caKey: ca.key, serverCert: server.cert, serverKey: server.key, client: { caPath: ca.cert, certPath: client.cert, keyPath: client.key } };
}

/** A loopback port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface PykmipServer {
  readonly host: string;
  readonly port: number;
  readonly endpoint: string;
  readonly dir: string;
  readonly pki: Pki;
  readonly logPath: string;
  /** Kills the server (SIGTERM, then SIGKILL after `graceMs`) and waits until it is gone. */
  stop(graceMs?: number): Promise<void>;
  /** Starts it again on the same port and database. */
  start(): Promise<void>;
  /** SIGSTOP to the server's process group: it keeps its sockets but answers nothing. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** stop() and remove the temporary directory. */
  cleanup(): Promise<void>;
  /** The last lines of the server log, for failure messages. */
  logTail(lines?: number): Promise<string>;
}

/** Waits until a mutual-TLS handshake with the server succeeds. */
async function waitForTls(port: number, pki: Pki, child: ChildProcess, timeoutMs: number): Promise<void> {
  const [ca, cert, key] = await Promise.all([readFile(pki.caCert), readFile(pki.client.certPath), readFile(pki.client.keyPath)]);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`pykmip-server exited (${child.exitCode ?? child.signalCode}) before accepting TLS`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca, cert, key, minVersion: 'TLSv1.2' });
      const t = setTimeout(() => finish(false), 2000);
      function finish(v: boolean): void {
        clearTimeout(t);
        s.destroy();
        resolve(v);
      }
      s.once('secureConnect', () => finish(true));
      s.once('error', () => finish(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`pykmip-server did not accept TLS on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** `database`: a PyKMIP database file to start from (copied; e.g. a fixture holding keys made earlier). */
export async function startPykmip(options: { database?: string } = {}): Promise<PykmipServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'atrest-pykmip-'));
  const pki = await makePki(dir);
  if (options.database) await copyFile(options.database, path.join(dir, 'pykmip.db'));
  const port = await freePort();
  const conf = path.join(dir, 'server.conf');
  const logPath = path.join(dir, 'server.log');
  await writeFile(
    conf,
    [
      '[server]',
      'hostname=127.0.0.1',
      `port=${port}`,
      `certificate_path=${pki.serverCert}`,
      `key_path=${pki.serverKey}`,
      `ca_path=${pki.caCert}`,
      'auth_suite=TLS1.2',
      'enable_tls_client_auth=True',
      `database_path=${path.join(dir, 'pykmip.db')}`,
      `policy_path=${dir}`,
      'logging_level=INFO',
      '',
    ].join('\n'),
  );
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    if (child && child.exitCode === null && child.signalCode === null) return; // running already
    // Debian's interpreter and nothing from a pyenv on PATH.
    const env = { PATH: '/usr/bin:/bin', HOME: dir, LANG: 'C.UTF-8' };
    // Its own process group: PyKMIP forks helpers (the policy monitor) that a kill of the main
    // process alone would orphan; stop() signals the whole group.
    const c = spawn(PYKMIP_SERVER, ['-f', conf, '-l', logPath], { env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    child = c;
    c.stderr?.resume();
    try {
      await waitForTls(port, pki, c, 30_000);
    } catch (e) {
      const tail = await server.logTail(20);
      await server.stop(0);
      throw new Error(`${(e as Error).message}\n--- server log ---\n${tail}`);
    }
  };

  const server: PykmipServer = {
    host: '127.0.0.1',
    port,
    endpoint: `127.0.0.1:${port}`,
    dir,
    pki,
    logPath,
    start,
    freeze() {
      if (child?.pid) process.kill(-child.pid, 'SIGSTOP');
    },
    thaw() {
      if (child?.pid) process.kill(-child.pid, 'SIGCONT');
    },
    async stop(graceMs = 1000) {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const pid = c.pid!;
      const signalGroup = (sig: NodeJS.Signals | 0): boolean => {
        try {
          process.kill(-pid, sig);
          return true;
        } catch {
          return false; // ESRCH: the group is gone
        }
      };
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      signalGroup('SIGTERM');
      signalGroup('SIGCONT'); // a frozen server acts on the SIGTERM only once it runs again
      const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
      // Then make sure no forked helper outlives it (they hold the log and the stderr pipe).
      signalGroup('SIGKILL');
      for (let i = 0; i < 100 && signalGroup(0); i++) await new Promise((r) => setTimeout(r, 50));
    },
    async cleanup() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
    async logTail(lines = 40) {
      try {
        return (await readFile(logPath, 'utf8')).split('\n').slice(-lines).join('\n');
      } catch {
        return '(no log)';
      }
    },
  };
  await start();
  return server;
}
