// Fault injection for the KMIP client: a scripted mutual-TLS server (node:tls, certificates made by
// openssl) that drops connections, stalls, or answers with oversized or malformed bytes. Real
// server behaviour is covered by kmip-server.test.ts against PyKMIP; this file covers what a
// healthy PyKMIP never does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { KmipClient } from '../../src/plugin/kmip/client.js';
import { KmipError } from '../../src/plugin/kmip/errors.js';
import { ttlvMessageSize } from '../../src/plugin/kmip/ttlv.js';
import { makePki, type Pki } from '../helpers/pykmip.js';

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/kmip/pykmip-messages.json', import.meta.url), 'utf8')) as Record<string, string>;
const LOCATE_RESPONSE = Buffer.from(fixtures['locateResponse']!, 'hex');

let dir: string;
let pki: Pki;
let creds: { ca: Buffer; cert: Buffer; key: Buffer };

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'atrest-kmip-faults-'));
  pki = await makePki(dir);
  creds = { ca: await readFile(pki.caCert), cert: await readFile(pki.client.certPath), key: await readFile(pki.client.keyPath) };
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** What the scripted server does with the n-th request it reads (counting from 0, over all connections). */
type Behaviour = (n: number, socket: tls.TLSSocket) => void;

async function withServer(behave: Behaviour, fn: (client: KmipClient, stats: { connections: number; requests: number }) => Promise<void>, clientOpts: { retries?: number; timeoutMs?: number; maxResponseBytes?: number; maxConnections?: number } = {}): Promise<void> {
  const stats = { connections: 0, requests: 0 };
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer(
    { ca: await readFile(pki.caCert), cert: await readFile(pki.serverCert), key: await readFile(pki.serverKey), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    (socket) => {
      stats.connections++;
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      let buf = Buffer.alloc(0);
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 8 && buf.length >= ttlvMessageSize(buf.subarray(0, 8))) {
          buf = buf.subarray(ttlvMessageSize(buf.subarray(0, 8)));
          behave(stats.requests++, socket);
        }
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const client = new KmipClient({ host: '127.0.0.1', port, ...creds, retryBaseMs: 10, ...clientOpts });
  try {
    await fn(client, stats);
  } finally {
    client.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

const answer: Behaviour = (_n, socket) => socket.write(LOCATE_RESPONSE);

async function rejectsKmip(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof KmipError, `expected KmipError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return true;
  });
}

test('faults: a connection dropped after the request is retried on a new connection (idempotent operations)', async () => {
  await withServer(
    (n, socket) => (n === 0 ? socket.destroy() : answer(n, socket)),
    async (client, stats) => {
      assert.deepEqual(await client.locate({ name: 'x' }), ['7', '3']);
      assert.equal(stats.requests, 2);
      assert.equal(stats.connections, 2);
      // The healthy connection is reused afterwards.
      await client.locate({ name: 'x' });
      assert.equal(stats.connections, 2);
    },
  );
});

test('pool: concurrent calls share at most maxConnections connections, and all complete', async () => {
  await withServer(
    (_n, socket) => setTimeout(() => socket.write(LOCATE_RESPONSE), 20),
    async (client, stats) => {
      const results = await Promise.all(Array.from({ length: 9 }, () => client.locate({ name: 'x' })));
      assert.equal(results.length, 9);
      for (const r of results) assert.deepEqual(r, ['7', '3']);
      assert.equal(stats.requests, 9);
      assert.equal(stats.connections, 2);
    },
    { maxConnections: 2 },
  );
});

test('faults: Create is not re-sent after a drop (it may have happened); retries are bounded', async () => {
  await withServer(
    (_n, socket) => socket.destroy(),
    async (client, stats) => {
      await rejectsKmip(client.createAesKey({ names: ['x/v1'] }), 'KMIP_TRANSPORT', /Create: KMIP server 127\.0\.0\.1:\d+ (closed the connection|unreachable)/);
      assert.equal(stats.requests, 1, 'Create sent once');
      await rejectsKmip(client.locate({ name: 'x' }), 'KMIP_TRANSPORT', /Locate:/);
      assert.equal(stats.requests, 1 + 3, 'Locate: one attempt plus two retries');
    },
  );
});

test('faults: a server that never answers hits the per-call timeout (not retried)', async () => {
  await withServer(
    () => undefined,
    async (client, stats) => {
      await rejectsKmip(client.locate({ name: 'x' }), 'KMIP_TIMEOUT', /Locate: KMIP server 127\.0\.0\.1:\d+: no response within 300 ms/);
      assert.equal(stats.requests, 1);
    },
    { timeoutMs: 300 },
  );
});

test('faults: oversized, malformed and unsolicited responses fail cleanly', async () => {
  const huge = Buffer.from('42007B01' + '7FFFFFF8', 'hex');
  await withServer(
    (_n, socket) => socket.write(huge),
    async (client) => {
      await rejectsKmip(client.locate({ name: 'x' }), 'KMIP_MALFORMED', /exceeds the 65536-byte limit/);
    },
    { maxResponseBytes: 65536 },
  );
  const bad = Buffer.from(LOCATE_RESPONSE);
  bad[bad.length - 1] = 0x01; // non-zero padding in the last Text String
  await withServer(
    (_n, socket) => socket.write(bad),
    async (client) => {
      await rejectsKmip(client.locate({ name: 'x' }), 'KMIP_MALFORMED', /Locate: malformed TTLV at byte \d+: non-zero padding/);
    },
  );
  await withServer(
    (_n, socket) => socket.write(Buffer.concat([LOCATE_RESPONSE, LOCATE_RESPONSE.subarray(0, 16)])),
    async (client) => {
      await rejectsKmip(client.locate({ name: 'x' }), 'KMIP_PROTOCOL', /bytes beyond the response message/);
    },
  );
});

test('faults: nothing listening is KMIP_TRANSPORT after bounded retries; a closed client refuses calls', async () => {
  const probe = tls.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const client = new KmipClient({ host: '127.0.0.1', port, ...creds, retryBaseMs: 10 });
  const outcomes: string[] = [];
  const observed = new KmipClient({ host: '127.0.0.1', port, ...creds, retryBaseMs: 10, observe: (op, _s, outcome) => outcomes.push(`${op}:${outcome}`) });
  try {
    await rejectsKmip(client.locate({ name: 'x' }), 'KMIP_TRANSPORT', /unreachable during connect: ECONNREFUSED/);
    await assert.rejects(observed.activate('1'));
    assert.deepEqual(outcomes, ['Activate:KMIP_TRANSPORT']);
  } finally {
    client.close();
    observed.close();
  }
  await rejectsKmip(client.locate({ name: 'x' }), 'KMIP_CLOSED', /closed/);
});
