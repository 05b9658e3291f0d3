// The plugin's HTTP/2 edge (src/plugin/http2-edge) with a raw HTTP/2 client that writes exactly
// the bytes each case needs: every :authority kube-apiserver and other clients send (socket path,
// %-encoded path, localhost, empty, absent) over v1beta1 and v2, the HTTP/2 and HPACK features a
// rewrite must carry (padding, priority, CONTINUATION, the client's dynamic table, size updates),
// the native hand-over (held bytes replayed, our SETTINGS ACK dropped), the hold timeout and size
// limit, one log line and one metric count per repaired connection, and malformed connections
// costing only themselves. Also re-measures which authority octets nghttp2 accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import { Writable, type Duplex } from 'node:stream';
import pino from 'pino';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as v1 from '../../src/gen/v1beta1/api_pb.js';
import * as v2 from '../../src/gen/v2/api_pb.js';
import { newRegistry } from '../../src/metrics.js';
import { localBackend } from '../../src/plugin/backends/local.js';
import { authorityAccepted } from '../../src/plugin/http2-edge/authority.js';
import { Http2Edge } from '../../src/plugin/http2-edge/edge.js';
import { CLIENT_PREFACE, EMPTY_SETTINGS_FRAME, frameHeader } from '../../src/plugin/http2-edge/frames.js';
import { RepairingConnection } from '../../src/plugin/http2-edge/repairing-connection.js';
import { startPluginServer, type PluginServer } from '../../src/plugin/server.js';
import { makeTempDir, waitFor } from '../helpers/plugin.js';
import {
  grpcDataFrame, grpcMessage, grpcRequestBlock, headersFrames, headerValue, hpack, RawHttp2Client, SETTINGS_ACK, type HeadersFrameOptions,
} from '../helpers/raw-http2.js';
import { inProcessLogger } from '../helpers/test-log.js';

type LogLine = Record<string, unknown>;

function capturingLogger(lines: LogLine[]) {
  return pino({ level: 'info' }, new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as LogLine); done(); } }));
}

const STATUS = '/v2.KeyManagementService/Status';
const VERSION = '/v1beta1.KeyManagementService/Version';
const versionRequest = toBinary(v1.VersionRequestSchema, create(v1.VersionRequestSchema, { version: 'v1beta1' }));
const statusRequest = toBinary(v2.StatusRequestSchema, create(v2.StatusRequestSchema));

interface Plugin { server: PluginServer; socket: string; keyId: string; lines: LogLine[]; metrics: ReturnType<typeof newRegistry> }

async function withPlugin(fn: (p: Plugin) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await makeTempDir('atrest-edge-');
  const ctx = { log: inProcessLogger('kms-plugin') };
  const keyFile = join(dir, 'kek.json');
  const keyId = await localBackend.initKey({ keyFile }, ctx);
  const backend = await localBackend.open({ keyFile }, ctx);
  const lines: LogLine[] = [];
  const metrics = newRegistry();
  const socket = join(dir, 'kms.sock');
  const server = await startPluginServer({ listen: `unix://${socket}`, backend, log: capturingLogger(lines), metrics });
  try {
    await fn({ server, socket, keyId, lines, metrics });
  } finally {
    await server.close();
    await backend.close();
    await cleanup();
  }
}

/** Sends a gRPC call with this authority representation (undefined: none) and waits for its answer. */
async function call(client: RawHttp2Client, streamId: number, path: string, authority: Buffer | undefined, message: Uint8Array, options: HeadersFrameOptions = {}) {
  client.write(Buffer.concat([headersFrames(streamId, grpcRequestBlock(path, authority), options), grpcDataFrame(streamId, message)]));
  const result = await client.response(streamId);
  assert.equal(result.rstCode, undefined, `stream ${streamId} was reset (code ${result.rstCode})`);
  const trailers = result.headerBlocks.at(-1);
  assert.equal(headerValue(trailers, 'grpc-status'), '0', `grpc-status of stream ${streamId}: ${JSON.stringify(trailers)}`);
  return grpcMessage(result);
}

async function assertStatus(client: RawHttp2Client, streamId: number, authority: Buffer | undefined, keyId: string, options?: HeadersFrameOptions): Promise<void> {
  const status = fromBinary(v2.StatusResponseSchema, await call(client, streamId, STATUS, authority, statusRequest, options));
  assert.deepEqual({ version: status.version, healthz: status.healthz, keyId: status.keyId }, { version: 'v2beta1', healthz: 'ok', keyId });
}

async function assertVersion(client: RawHttp2Client, streamId: number, authority: Buffer | undefined, options?: HeadersFrameOptions): Promise<void> {
  const version = fromBinary(v1.VersionResponseSchema, await call(client, streamId, VERSION, authority, versionRequest, options));
  assert.equal(version.version, 'v1beta1');
  assert.equal(version.runtimeName, 'atrest');
}

async function repairedCount(metrics: ReturnType<typeof newRegistry>): Promise<number> {
  const text = await metrics.metrics();
  const m = /^atrest_kms_plugin_authority_repaired_connections_total (\d+)$/m.exec(text);
  assert.ok(m, text);
  return Number(m[1]);
}

test('nghttp2 (Node\'s HTTP/2 server) accepts exactly the :authority values the edge leaves alone', async () => {
  const { dir, cleanup } = await makeTempDir('atrest-edge-');
  const server = http2.createServer();
  server.on('stream', (s) => { s.respond({ ':status': 200 }); s.end(); });
  const socket = join(dir, 'h2.sock');
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  const client = new RawHttp2Client(socket);
  try {
    client.start();
    const values = [...Array.from({ length: 256 }, (_, b) => `a${String.fromCharCode(b)}b`), '', '/var/run/kms.sock', '%2Fvar%2Frun%2Fkms.sock', 'localhost', '[::1]:80'];
    const mismatches: string[] = [];
    for (const [i, value] of values.entries()) {
      const id = 2 * i + 1;
      client.write(headersFrames(id, Buffer.concat([hpack.indexed(3), hpack.indexed(6), hpack.literal(4, '/x'), hpack.literal(1, value)]), { endStream: true }));
      const r = await client.response(id);
      const accepted = r.rstCode === undefined;
      if (accepted !== authorityAccepted(value)) mismatches.push(`${JSON.stringify(value)}: nghttp2 ${accepted ? 'accepts' : 'resets'}`);
    }
    assert.deepEqual(mismatches, []);
    assert.equal(authorityAccepted(''), false);
    // And a request with neither :authority nor host is reset too.
    client.write(headersFrames(1001, Buffer.concat([hpack.indexed(3), hpack.indexed(6), hpack.literal(4, '/x')]), { endStream: true }));
    assert.ok((await client.response(1001)).rstCode !== undefined, 'a request without :authority is reset');
  } finally {
    client.destroy();
    server.close();
    await cleanup();
  }
});

test('every authority is served over v1beta1 and v2; each repaired connection is logged once and counted once', async () => {
  await withPlugin(async ({ socket, keyId, lines, metrics }) => {
    const authorities: Array<[string, Buffer | undefined, boolean]> = [
      ['bare socket path (grpc-go < 1.57: kube-apiserver 1.27/1.28)', hpack.literal(1, socket), true],
      ['%-encoded path (grpc-go >= 1.57, grpc C-core >= 1.57)', hpack.literal(1, encodeURIComponent(socket)), false],
      ['localhost (kube-apiserver 1.32+ KMS v2, grpc-js, our own client)', hpack.literal(1, 'localhost', { huffman: true }), false],
      ['empty', hpack.literal(1, ''), true],
      ['absent', undefined, true],
      ['host header only, a path', hpack.literal('host', socket), true],
    ];
    for (const [what, authority, repaired] of authorities) {
      const client = new RawHttp2Client(socket);
      try {
        client.start();
        await assertVersion(client, 1, authority);
        await assertStatus(client, 3, authority, keyId);
        await assertStatus(client, 5, authority, keyId);
      } catch (err) {
        throw new Error(`${what}: ${(err as Error).message}`);
      } finally {
        client.destroy();
      }
      const logged = lines.filter((l) => l['event'] === 'authority-repaired');
      assert.equal(logged.length, authorities.slice(0, authorities.findIndex((a) => a[0] === what) + 1).filter((a) => a[2]).length, `${what}: log lines ${JSON.stringify(logged)}`);
      if (repaired) assert.equal(logged.at(-1)?.['replacement'], 'localhost');
    }
    const logged = lines.filter((l) => l['event'] === 'authority-repaired');
    assert.deepEqual(logged.map((l) => [l['problem'], l['authority']]), [
      ['invalid-characters', socket], ['empty', ''], ['absent', undefined], ['invalid-characters', socket],
    ]);
    assert.equal(await repairedCount(metrics), 4);
  });
});

test('a repaired connection carries padding, priority, CONTINUATION frames, Huffman strings and the client\'s dynamic table', async () => {
  await withPlugin(async ({ socket, keyId, lines }) => {
    const client = new RawHttp2Client(socket);
    try {
      client.start();
      // The path enters the client's dynamic table (index 62) in a padded, prioritised block cut into 5-byte fragments.
      const indexedAuthority = Buffer.concat([Buffer.from([0x41]), hpack.string(socket, true)]); // incremental, name :authority (static 1)
      await assertStatus(client, 1, indexedAuthority, keyId, { pad: 7, priority: true, fragment: 5 });
      // Later blocks refer to it by index; the server's table never saw it.
      await assertStatus(client, 3, hpack.indexed(62), keyId);
      await assertVersion(client, 5, hpack.indexed(62), { fragment: 3 });
      // A size update to 0 empties the table; a new entry then sits at 62 again.
      client.write(Buffer.concat([
        headersFrames(7, Buffer.concat([hpack.sizeUpdate(0), hpack.sizeUpdate(4096), grpcRequestBlock(STATUS, hpack.incremental(':authority', '', true))])),
        grpcDataFrame(7, statusRequest),
      ]));
      const r = await client.response(7);
      assert.equal(headerValue(r.headerBlocks.at(-1), 'grpc-status'), '0');
      await assertStatus(client, 9, hpack.indexed(62), keyId);
      // A never-indexed custom header survives the rewrite.
      await assertStatus(client, 11, Buffer.concat([hpack.indexed(62), hpack.literal('x-trace', 'abc', { never: true })]), keyId);
    } finally {
      client.destroy();
    }
    assert.equal(lines.filter((l) => l['event'] === 'authority-repaired').length, 1);
  });
});

test('a native hand-over replays the held bytes exactly, the client\'s dynamic table included', async () => {
  await withPlugin(async ({ socket, keyId, lines }) => {
    const client = new RawHttp2Client(socket);
    try {
      client.start();
      await assertStatus(client, 1, hpack.incremental(':authority', 'localhost'), keyId, { pad: 3, priority: true, fragment: 16 });
      await assertStatus(client, 3, hpack.indexed(62), keyId);
      await assertVersion(client, 5, hpack.indexed(62));
    } finally {
      client.destroy();
    }
    assert.equal(lines.filter((l) => l['event'] === 'authority-repaired').length, 0);
  });
});

/** An edge in front of a plain Node HTTP/2 server, recording what it injects. */
async function withEdge(fn: (e: { socket: string; edge: Http2Edge; injected: Duplex[] }) => Promise<void>, holdTimeoutMs = 5000): Promise<void> {
  const { dir, cleanup } = await makeTempDir('atrest-edge-');
  const h2 = http2.createServer();
  h2.on('stream', (s, headers) => { s.respond({ ':status': 200 }); s.end(String(headers[':authority'])); });
  const injected: Duplex[] = [];
  const edge = new Http2Edge({ inject: (c) => { injected.push(c); h2.emit('connection', c); }, log: inProcessLogger('kms-plugin'), holdTimeoutMs });
  const listener = net.createServer((s) => edge.accept(s));
  const socket = join(dir, 'edge.sock');
  await new Promise<void>((resolve) => listener.listen(socket, resolve));
  try {
    await fn({ socket, edge, injected });
  } finally {
    edge.close();
    listener.close();
    h2.close();
    for (const c of injected) c.destroy();
    await cleanup();
  }
}

async function plainRequest(client: RawHttp2Client, streamId: number, authority: Buffer): Promise<string> {
  client.write(headersFrames(streamId, Buffer.concat([hpack.indexed(2), hpack.indexed(6), hpack.literal(4, '/x'), authority]), { endStream: true }));
  const r = await client.response(streamId);
  assert.equal(r.rstCode, undefined, `stream ${streamId} reset`);
  return r.data.toString();
}

test('the edge hands well-behaved connections over as native sockets and only the others through the repairing stream', async () => {
  await withEdge(async ({ socket, injected }) => {
    for (const [authority, native] of [['localhost', true], ['%2Frun%2Fkms.sock', true], ['/run/kms.sock', false], ['', false]] as const) {
      const client = new RawHttp2Client(socket);
      try {
        client.start();
        assert.equal(await plainRequest(client, 1, hpack.literal(1, authority)), native ? authority : 'localhost');
        assert.equal(await plainRequest(client, 3, hpack.literal(1, authority)), native ? authority : 'localhost');
      } finally {
        client.destroy();
      }
      const last = injected.at(-1);
      assert.equal(last instanceof net.Socket, native, `${JSON.stringify(authority)} handed over as ${last?.constructor.name}`);
      assert.equal(last instanceof RepairingConnection, !native);
    }
  });
});

test('a client that sends its request before it ACKs our SETTINGS: held until the ACK, which nghttp2 never sees', async () => {
  await withEdge(async ({ socket, injected }) => {
    const client = new RawHttp2Client(socket, false);
    try {
      client.write(Buffer.concat([CLIENT_PREFACE, EMPTY_SETTINGS_FRAME,
        headersFrames(1, Buffer.concat([hpack.indexed(2), hpack.indexed(6), hpack.literal(4, '/x'), hpack.literal(1, 'localhost')]), { endStream: true })]));
      await client.until('the edge\'s SETTINGS', () => client.settingsReceived >= 1);
      client.write(SETTINGS_ACK); // for the edge's SETTINGS: dropped
      await client.until('nghttp2\'s SETTINGS', () => client.settingsReceived >= 2);
      client.write(SETTINGS_ACK); // for nghttp2's: an extra ACK would be a connection error (GOAWAY)
      assert.equal((await client.response(1)).data.toString(), 'localhost');
      assert.equal(await plainRequest(client, 3, hpack.literal(1, 'localhost')), 'localhost');
      assert.equal(client.goAwayCode, undefined);
      assert.ok(injected.at(-1) instanceof net.Socket);
    } finally {
      client.destroy();
    }
  });
});

test('a connection that sends no request within the hold time, or too much before one, is repaired, and served', async () => {
  await withEdge(async ({ socket, edge, injected }) => {
    // Connects and waits (an idle channel): after the hold time it is handed over; requests still work.
    const idle = new RawHttp2Client(socket);
    const silent = new RawHttp2Client(socket);
    try {
      idle.start();
      await waitFor('held connections handed over', () => edge.held === 0 && injected.length === 2);
      assert.ok(injected.every((c) => c instanceof RepairingConnection));
      assert.equal(await plainRequest(idle, 1, hpack.literal(1, 'localhost')), 'localhost');
      assert.equal(await plainRequest(idle, 3, hpack.literal(1, '/run/kms.sock')), 'localhost');
      silent.start(); // its preface comes after the hand-over
      assert.equal(await plainRequest(silent, 1, hpack.literal(1, '/run/kms.sock')), 'localhost');
    } finally {
      idle.destroy();
      silent.destroy();
    }
  }, 50);
  await withEdge(async ({ socket, injected }) => {
    // 80 KiB of extension frames (nghttp2 ignores unknown types) before the first request.
    const client = new RawHttp2Client(socket);
    try {
      client.start();
      const filler = Buffer.alloc(16_000, 0x61);
      for (let i = 0; i < 5; i++) client.write(Buffer.concat([frameHeader(filler.length, 0xf0, 0, 0), filler]));
      await waitFor('the over-full connection handed over', () => injected.length === 1);
      assert.ok(injected[0] instanceof RepairingConnection);
      assert.equal(await plainRequest(client, 1, hpack.literal(1, 'localhost')), 'localhost');
    } finally {
      client.destroy();
    }
  });
});

test('malformed HTTP/2 costs only its own connection; the plugin keeps serving the others', async () => {
  await withPlugin(async ({ socket, keyId, lines }) => {
    const good = new RawHttp2Client(socket);
    const held: RawHttp2Client[] = [];
    try {
      good.start();
      await assertStatus(good, 1, hpack.literal(1, socket), keyId);

      // Not HTTP/2 at all, and garbage after the preface: nghttp2 answers them as it always did.
      const http1 = new RawHttp2Client(socket);
      http1.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      const garbage = new RawHttp2Client(socket);
      garbage.write(Buffer.concat([CLIENT_PREFACE, Buffer.from('\xff\xff\xff\x01\x00\x00\x00\x00\x01garbage-garbage', 'latin1')]));
      // Bad HPACK before any verdict (an index beyond every table): nghttp2's COMPRESSION_ERROR.
      const badFirst = new RawHttp2Client(socket);
      badFirst.start();
      badFirst.write(headersFrames(1, Buffer.concat([hpack.indexed(3), hpack.indexed(300)]), { endStream: true }));
      // Bad HPACK on a connection already being repaired: the edge closes it.
      const badLater = new RawHttp2Client(socket);
      badLater.start();
      await assertStatus(badLater, 1, hpack.literal(1, socket), keyId);
      badLater.write(headersFrames(3, Buffer.concat([hpack.indexed(3), hpack.indexed(300)]), { endStream: true }));
      // A CONTINUATION that never ends, past the 64 KiB block limit.
      const flood = new RawHttp2Client(socket);
      flood.start();
      await assertStatus(flood, 1, hpack.literal(1, socket), keyId);
      flood.write(headersFrames(3, Buffer.concat([grpcRequestBlock(STATUS, undefined), Buffer.alloc(100_000, 0x82)]), { fragment: 16_000 }).subarray(0, -1000));
      held.push(http1, garbage, badFirst, badLater, flood);
      // nghttp2 answers the bad HPACK with GOAWAY COMPRESSION_ERROR (and, as before the edge, leaves
      // closing to the client); the edge closes what it cannot parse.
      await badFirst.until('GOAWAY', () => badFirst.goAwayCode !== undefined);
      assert.equal(badFirst.goAwayCode, 9, 'COMPRESSION_ERROR from nghttp2');
      await Promise.all([http1, garbage, badLater, flood].map((c) => c.closed));

      // The first connection and new ones are still served.
      await assertStatus(good, 3, hpack.literal(1, socket), keyId);
      const fresh = new RawHttp2Client(socket);
      fresh.start();
      await assertStatus(fresh, 1, undefined, keyId);
      fresh.destroy();
    } finally {
      good.destroy();
      for (const c of held) c.destroy();
    }
    assert.equal(lines.filter((l) => l['event'] === 'http2-malformed').length, 2, JSON.stringify(lines));
  });
});

test('close() ends connections still held by the edge', async () => {
  let waiting: RawHttp2Client | undefined;
  await withPlugin(async ({ socket }) => {
    waiting = new RawHttp2Client(socket);
    waiting.start();
    await waiting.until('the edge\'s SETTINGS', () => waiting!.settingsReceived >= 1);
  });
  await waitFor('the held connection closed', () => !waiting!.isOpen);
});
