// Encrypt calls per second with the KMIP backend, against Debian's PyKMIP server (the bound):
//   1. PyKMIP's own client (kmip.pie ProxyKmipClient, AES-CBC) at 1 and 4 threads — the server's rate;
//   2. our KMIP client directly (AES-GCM, KMIP 1.4) at 1 and 4 concurrent calls;
//   3. `atrest kms-plugin --backend kmip` v2 Encrypt over its UNIX socket at 1, 8 and 32 callers.
// No assertions: it prints the figures.   node --import tsx bench/kmip.ts [--seconds 3]
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { KmipClient } from '../src/plugin/kmip/client.js';
import { parseListenAddress } from '../src/plugin/listen-address.js';
import { PluginSocketClient } from '../src/plugin/socket-client.js';
import { startPykmip } from '../test/helpers/pykmip.js';
import { PluginProcess, makeTempDir, runAtrest } from '../test/helpers/plugin.js';

const args = process.argv.slice(2);
const seconds = Number(args[args.indexOf('--seconds') + 1] ?? 3) || 3;
const run = promisify(execFile);

const PY_CLIENT = `
import sys, time, threading
from kmip.pie.client import ProxyKmipClient
from kmip.core import enums
conf, uid, seconds, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
params = {'cryptographic_algorithm': enums.CryptographicAlgorithm.AES,
          'block_cipher_mode': enums.BlockCipherMode.CBC, 'padding_method': enums.PaddingMethod.PKCS5}
counts = [0] * threads
barrier = threading.Barrier(threads)
def work(i):
    c = ProxyKmipClient(config_file=conf)
    c.open()
    c.encrypt(b'\\0' * 32, uid=uid, cryptographic_parameters=params)
    barrier.wait()
    end = time.time() + seconds
    while time.time() < end:
        c.encrypt(b'\\0' * 32, uid=uid, cryptographic_parameters=params)
        counts[i] += 1
    c.close()
ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
print(sum(counts) / seconds)
`;

async function rate(concurrency: number, ms: number, call: () => Promise<unknown>): Promise<number> {
  let done = 0;
  const until = performance.now() + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        await call();
        done++;
      }
    }),
  );
  return Math.round(done / (ms / 1000));
}

const srv = await startPykmip();
const { dir, cleanup } = await makeTempDir('atrest-bench-kmip-');
let plugin: PluginProcess | undefined;
try {
  const rows: Array<{ what: string; concurrency: number; callsPerSecond: number }> = [];
  const env = {
    ATREST_KMS_PLUGIN_BACKEND: 'kmip',
    ATREST_KMIP_ENDPOINT: srv.endpoint,
    ATREST_KMIP_CA: srv.pki.client.caPath,
    ATREST_KMIP_CERT: srv.pki.client.certPath,
    ATREST_KMIP_KEY: srv.pki.client.keyPath,
    ATREST_KMIP_KEY_NAME: 'bench-kek',
  };
  const init = await runAtrest(['kms-plugin', 'init-key'], env);
  if (init.code !== 0) throw new Error(`init-key failed: ${init.stderr}`);
  const uid = init.stdout.trim().split(':')[2]!;

  // 1. PyKMIP's own client.
  const conf = join(dir, 'pykmip-client.conf');
  await writeFile(
    conf,
    `[client]\nhost=${srv.host}\nport=${srv.port}\ncertfile=${srv.pki.client.certPath}\nkeyfile=${srv.pki.client.keyPath}\n` +
      `ca_certs=${srv.pki.caCert}\ncert_reqs=CERT_REQUIRED\nssl_version=PROTOCOL_TLSv1_2\ndo_handshake_on_connect=True\n` +
      `suppress_ragged_eofs=True\nauth_suite=TLS1.2\n`,
  );
  const script = join(dir, 'pyclient.py');
  await writeFile(script, PY_CLIENT);
  for (const threads of [1, 4]) {
    const { stdout } = await run('/usr/bin/python3', [script, conf, uid, String(seconds), String(threads)], { env: { PATH: '/usr/bin:/bin' } });
    rows.push({ what: 'PyKMIP client (CBC)', concurrency: threads, callsPerSecond: Math.round(Number(stdout.trim())) });
  }

  // 2. Our client directly.
  const client = new KmipClient({
    host: srv.host,
    port: srv.port,
    ca: await readFile(srv.pki.caCert),
    cert: await readFile(srv.pki.client.certPath),
    key: await readFile(srv.pki.client.keyPath),
  });
  const dek = randomBytes(32);
  await rate(4, 300, () => client.encrypt(uid, dek, { mode: 'gcm' })); // warm-up: opens the pool
  for (const c of [1, 4]) rows.push({ what: 'atrest KMIP client (GCM)', concurrency: c, callsPerSecond: await rate(c, seconds * 1000, () => client.encrypt(uid, dek, { mode: 'gcm' })) });
  client.close();

  // 3. The plugin over its socket.
  const socket = join(dir, 'kms.sock');
  plugin = new PluginProcess(['--listen', `unix://${socket}`], env);
  await plugin.waitForEvent('start');
  const sock = new PluginSocketClient(parseListenAddress(`unix://${socket}`), 30_000);
  await rate(8, 500, () => sock.encrypt(dek));
  for (const c of [1, 8, 32]) rows.push({ what: 'plugin v2 Encrypt (socket)', concurrency: c, callsPerSecond: await rate(c, seconds * 1000, () => sock.encrypt(dek)) });
  sock.close();

  console.log(`KMIP Encrypt against PyKMIP ${srv.endpoint} (${seconds} s per row, node ${process.version}):`);
  for (const r of rows) console.log(`  ${r.what.padEnd(28)} ${String(r.concurrency).padStart(2)} concurrent: ${r.callsPerSecond} calls/s`);
  console.log(JSON.stringify({ bench: 'kmip-encrypt', seconds, rows }));
} finally {
  await plugin?.stop();
  await cleanup();
  await srv.cleanup();
}
