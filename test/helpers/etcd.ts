// Starts real etcd servers (Debian's /usr/bin/etcd) for tests: one member or a cluster, on free
// loopback ports, each in its own temporary directory. Never touches a system etcd on 2379.
// Usage:
//   const etcd = await startEtcdCluster(1);   // or 3
//   ... etcd.endpoints ...
//   await etcd.members[0].stop(); await etcd.members[0].start();
//   await etcd.cleanup();
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ETCD_BIN = process.env['ATREST_TEST_ETCD'] ?? '/usr/bin/etcd';

export function etcdAvailable(): boolean {
  // In CI every dependency is installed by .ci/run: a missing one must fail the tests, not skip them.
  return process.env['CI'] === 'true' || existsSync(ETCD_BIN);
}

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** The process's recent stderr (last 64 KiB), for failure messages. */
  log(): string;
  running(): boolean;
  /**
   * Stops the member and waits for it to exit: SIGTERM (a leader hands over leadership first; SIGKILL
   * after 5 s) or, with `{ kill: true }`, SIGKILL at once (a crash: the others must elect a leader).
   */
  stop(options?: { kill?: boolean }): Promise<void>;
  /** Starts it again on the same ports and data and waits until it reports healthy. */
  start(): Promise<void>;
}

/** PEM material of a TLS cluster: the CA and a client certificate it signed. */
export interface EtcdTlsMaterial {
  ca: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
  caFile: string;
  clientCertFile: string;
  clientKeyFile: string;
}

export interface EtcdCluster {
  readonly members: EtcdMember[];
  /** Client URLs of all members, `http://127.0.0.1:<port>` (`https://` with TLS). */
  readonly endpoints: string[];
  /** With `{ tls: true }`: client URLs need TLS and a client certificate from this CA. */
  readonly tls?: EtcdTlsMaterial;
  readonly dir: string;
  /** Kills every member and removes the temporary directory. */
  cleanup(): Promise<void>;
}

/** A port that was free a moment ago on 127.0.0.1 (the caller retries when a start races). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** etcd 3.4 refuses to run on architectures other than amd64 unless told to (arm64 included). */
function etcdEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (process.arch !== 'x64' && env['ETCD_UNSUPPORTED_ARCH'] === undefined) {
    env['ETCD_UNSUPPORTED_ARCH'] = process.arch === 'ia32' ? '386' : process.arch;
  }
  return env;
}

class Member implements EtcdMember {
  private proc: ChildProcess | undefined;
  private stderr = '';
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly name: string,
    readonly clientUrl: string,
    readonly peerUrl: string,
    readonly dataDir: string,
    private readonly initialCluster: string,
    private readonly token: string,
    private readonly tls: { material: EtcdTlsMaterial; serverCert: string; serverKey: string } | undefined,
    private readonly extraArgs: readonly string[] = [],
  ) {}

  log(): string {
    return this.stderr;
  }

  running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  spawn(state: 'new' | 'existing'): void {
    const args = [
      `--name=${this.name}`,
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.clientUrl}`,
      `--advertise-client-urls=${this.clientUrl}`,
      `--listen-peer-urls=${this.peerUrl}`,
      `--initial-advertise-peer-urls=${this.peerUrl}`,
      `--initial-cluster=${this.initialCluster}`,
      `--initial-cluster-state=${state}`,
      `--initial-cluster-token=${this.token}`,
      // Faster elections than the defaults (100/1000 ms) so member-loss tests stay short.
      '--heartbeat-interval=50',
      '--election-timeout=500',
      '--logger=zap',
      '--log-level=warn',
      ...this.extraArgs,
    ];
    if (this.tls) {
      args.push(
        `--cert-file=${this.tls.serverCert}`,
        `--key-file=${this.tls.serverKey}`,
        `--trusted-ca-file=${this.tls.material.caFile}`,
        '--client-cert-auth',
      );
    }
    const proc = spawn(ETCD_BIN, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: etcdEnv(),
    });
    this.proc = proc;
    proc.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString('utf8')).slice(-65536);
    });
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    liveProcesses.add(proc);
    proc.once('exit', () => liveProcesses.delete(proc));
  }

  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running()) throw new Error(`etcd member ${this.name} exited:\n${this.stderr}`);
      try {
        const body = JSON.parse(await this.getHealth()) as { health?: string };
        if (body.health === 'true') return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`etcd member ${this.name} not healthy after ${timeoutMs} ms:\n${this.stderr}`);
      await sleep(100);
    }
  }

  private async getHealth(): Promise<string> {
    if (!this.tls) {
      const res = await fetch(`${this.clientUrl}/health`, { signal: AbortSignal.timeout(2000) });
      return res.text();
    }
    const { ca, clientCert, clientKey } = this.tls.material;
    return new Promise((resolve, reject) => {
      const req = httpsRequest(`${this.clientUrl}/health`, { ca, cert: clientCert, key: clientKey, timeout: 2000 }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.end();
    });
  }

  async stop(options: { kill?: boolean } = {}): Promise<void> {
    if (options.kill) return this.kill();
    const proc = this.proc;
    if (!proc || !this.running()) return;
    proc.kill('SIGTERM');
    const killer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(killer);
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || !this.running()) return;
    proc.kill('SIGKILL');
    await this.exited;
  }

  async start(): Promise<void> {
    if (this.running()) return;
    this.spawn('existing');
    await this.waitHealthy();
  }
}

/** Every etcd this process started, so a crashed test run does not leave servers behind. */
const liveProcesses = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const p of liveProcesses) p.kill('SIGKILL');
  });
}

/**
 * Starts a cluster of `size` members (1 = a single server) and waits until every member reports
 * healthy. Retries with new ports when a port was taken in the meantime.
 */
export async function startEtcdCluster(size = 1, options: { tls?: boolean; /** More etcd flags, e.g. `--max-txn-ops=4`. */ extraArgs?: string[] } = {}): Promise<EtcdCluster> {
  installExitHook();
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'atrest-etcd-'));
    const members: Member[] = [];
    try {
      const ports: number[] = [];
      while (ports.length < size * 2) {
        const p = await freePort();
        if (!ports.includes(p)) ports.push(p);
      }
      const token = `atrest-test-${process.pid}-${Date.now()}-${attempt}`;
      const tls = options.tls ? makeTlsMaterial(join(dir, 'pki')) : undefined;
      const scheme = tls ? 'https' : 'http';
      const spec = Array.from({ length: size }, (_, i) => ({
        name: `m${i}`,
        clientUrl: `${scheme}://127.0.0.1:${ports[2 * i]}`,
        peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
      }));
      const initialCluster = spec.map((m) => `${m.name}=${m.peerUrl}`).join(',');
      for (const m of spec) {
        members.push(new Member(m.name, m.clientUrl, m.peerUrl, join(dir, m.name), initialCluster, token, tls, options.extraArgs));
      }
      for (const m of members) m.spawn('new');
      await Promise.all(members.map((m) => m.waitHealthy()));
      return {
        members,
        endpoints: members.map((m) => m.clientUrl),
        dir,
        ...(tls ? { tls: tls.material } : {}),
        cleanup: async () => {
          await Promise.all(members.map((m) => m.kill()));
          rmSync(dir, { recursive: true, force: true });
        },
      };
    } catch (err) {
      lastError = err;
      await Promise.all(members.map((m) => m.kill()));
      rmSync(dir, { recursive: true, force: true });
    }
  }
  throw lastError;
}

/** A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
function makeTlsMaterial(dir: string): { material: EtcdTlsMaterial; serverCert: string; serverKey: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=atrest-test-etcd-ca');
  const issue = (name: string, ext: string) => {
    ossl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`), ext);
    ossl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  };
  issue('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  issue('client', 'extendedKeyUsage=clientAuth\n');
  const file = (n: string) => join(dir, n);
  return {
    material: {
      ca: readFileSync(file('ca.crt')),
      clientCert: readFileSync(file('client.crt')),
      clientKey: readFileSync(file('client.key')),
      caFile: file('ca.crt'),
      clientCertFile: file('client.crt'),
      clientKeyFile: file('client.key'),
    },
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
  };
}
