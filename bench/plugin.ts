// Encrypt calls per second over the KMS plugin's UNIX socket at 1, 8 and 32 concurrent callers.
// The plugin runs as its own process (`atrest kms-plugin` from source, local backend), the callers
// share one gRPC channel as kube-apiserver does; each caller sends a v2 Encrypt of a 32-byte DEK
// and waits for the answer before sending the next. No assertions: it prints the figures.
//   node --import tsx bench/plugin.ts [--seconds 3] [--api v2|v1]
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import * as v1 from '../src/gen/v1beta1/api_pb.js';
import { parseListenAddress } from '../src/plugin/listen-address.js';
import { PluginSocketClient } from '../src/plugin/socket-client.js';
import { makeTempDir, PluginProcess, runAtrest } from '../test/helpers/plugin.js';

const args = process.argv.slice(2);
const seconds = Number(args[args.indexOf('--seconds') + 1] ?? 3) || 3;
const api = args.includes('--api') ? args[args.indexOf('--api') + 1] : 'v2';

async function measure(client: PluginSocketClient, callers: number, ms: number): Promise<number> {
  const dek = randomBytes(32);
  const call = api === 'v1'
    ? () => client.unary('/v1beta1.KeyManagementService/Encrypt', v1.EncryptRequestSchema, v1.EncryptResponseSchema, create(v1.EncryptRequestSchema, { version: 'v1beta1', plain: dek }))
    : () => client.encrypt(dek);
  let done = 0;
  const until = performance.now() + ms;
  await Promise.all(Array.from({ length: callers }, async () => {
    while (performance.now() < until) {
      await call();
      done++;
    }
  }));
  return done;
}

const { dir, cleanup } = await makeTempDir('atrest-bench-');
const keyFile = join(dir, 'kek.json');
const socket = join(dir, 'kms.sock');
await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile]);
const plugin = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile], {});
try {
  await plugin.waitForEvent('start');
  const client = new PluginSocketClient(parseListenAddress(`unix://${socket}`), 10_000);
  await client.roundTrip();
  await measure(client, 8, 500); // warm-up (JIT, connection)
  const rows: Array<{ callers: number; callsPerSecond: number }> = [];
  for (const callers of [1, 8, 32]) {
    const n = await measure(client, callers, seconds * 1000);
    rows.push({ callers, callsPerSecond: Math.round(n / seconds) });
  }
  client.close();
  console.log(`KMS plugin ${api} Encrypt over a UNIX socket (local backend, ${seconds} s per row, node ${process.version}):`);
  for (const r of rows) console.log(`  ${String(r.callers).padStart(2)} concurrent callers: ${r.callsPerSecond} calls/s`);
  console.log(JSON.stringify({ bench: 'kms-plugin-encrypt', api, seconds, rows }));
} finally {
  await plugin.stop();
  await cleanup();
}
