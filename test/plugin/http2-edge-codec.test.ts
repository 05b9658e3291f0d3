// The HTTP/2 edge's codec pieces alone: the Huffman code (RFC 7541 Appendix C examples, every
// octet), the HPACK decoder against header blocks written by Node's own HTTP/2 client (nghttp2's
// encoder: dynamic table, eviction, a size update, never-indexed fields, latin1 octets), its
// errors and bounds, the encoder (round trip, never touches the receiver's table), the authority
// rule, and ClientStream's bookkeeping under arbitrary chunking.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { repairAuthority } from '../../src/plugin/http2-edge/authority.js';
import { ClientStream } from '../../src/plugin/http2-edge/client-stream.js';
import { CLIENT_PREFACE, EMPTY_SETTINGS_FRAME, frameHeader, FrameType } from '../../src/plugin/http2-edge/frames.js';
import { encodeWithoutIndexing, HpackDecoder, type HeaderField } from '../../src/plugin/http2-edge/hpack.js';
import { huffmanDecode, huffmanEncode, huffmanLength } from '../../src/plugin/http2-edge/huffman.js';
import { makeTempDir } from '../helpers/plugin.js';
import { grpcRequestBlock, headersFrames, hpack, SETTINGS_ACK } from '../helpers/raw-http2.js';

const RUNS = Number(process.env['ATREST_FUZZ_RUNS'] ?? 200);
const field = (name: string, value: string, neverIndex = false): HeaderField => ({ name, value, neverIndex });

test('Huffman: the RFC 7541 Appendix C examples, every octet both ways, and invalid codes refused', () => {
  for (const [text, hex] of [['www.example.com', 'f1e3c2e5f23a6ba0ab90f4ff'], ['no-cache', 'a8eb10649cbf'],
    ['custom-key', '25a849e95ba97d7f'], ['custom-value', '25a849e95bb8e8b4bf'], ['302', '6402'], ['private', 'aec3771a4b']] as const) {
    assert.equal(huffmanEncode(text).toString('hex'), hex, text);
    assert.equal(huffmanDecode(Buffer.from(hex, 'hex')), text);
    assert.equal(huffmanLength(text), hex.length / 2);
  }
  const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('latin1');
  assert.equal(huffmanDecode(huffmanEncode(every)), every);
  assert.equal(huffmanDecode(Buffer.alloc(0)), '');
  // 'a' is 00011 (5 bits): padding must be ones, and at most 7 bits of it.
  assert.equal(huffmanDecode(Buffer.from([0b00011111])), 'a');
  assert.throws(() => huffmanDecode(Buffer.from([0b00011000])), /padding/);
  assert.throws(() => huffmanDecode(Buffer.from([0b00011111, 0xff])), /padding/);
  // EOS (30 ones) inside a string.
  assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff])), /EOS/);
});

/** Header blocks Node's HTTP/2 client writes for these requests, captured from the wire. */
async function nghttp2Blocks(requests: Array<http2.OutgoingHttpHeaders>, headerTableSize: number): Promise<Buffer[]> {
  const { dir, cleanup } = await makeTempDir('atrest-hpack-');
  const blocks: Buffer[] = [];
  const path = join(dir, 'capture.sock');
  const server = net.createServer((socket) => {
    // A server preface announcing a smaller table: nghttp2's encoder must send a size update.
    const settings = Buffer.alloc(6);
    settings.writeUInt16BE(0x1, 0);
    settings.writeUInt32BE(headerTableSize, 2);
    socket.write(Buffer.concat([frameHeader(6, FrameType.SETTINGS, 0, 0), settings]));
    let buffer = Buffer.alloc(0);
    let fragments: Buffer[] = [];
    socket.on('data', (d: Buffer) => {
      buffer = Buffer.concat([buffer, d]);
      if (buffer.subarray(0, 24).equals(CLIENT_PREFACE)) buffer = buffer.subarray(24);
      while (buffer.length >= 9 && buffer.length >= 9 + buffer.readUIntBE(0, 3)) {
        const length = buffer.readUIntBE(0, 3);
        const [type, flags] = [buffer[3]!, buffer[4]!];
        const payload = buffer.subarray(9, 9 + length);
        buffer = buffer.subarray(9 + length);
        if (type === FrameType.SETTINGS && !(flags & 1)) socket.write(SETTINGS_ACK);
        if (type === FrameType.HEADERS || type === FrameType.CONTINUATION) {
          fragments.push(Buffer.from(payload)); // Node's client sends neither padding nor priority
          if (flags & 0x4) {
            blocks.push(Buffer.concat(fragments));
            fragments = [];
          }
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const client = http2.connect('http://localhost', { createConnection: () => net.connect(path) });
  try {
    for (const headers of requests) {
      // One at a time, so block i belongs to request i; the capture server never answers.
      const req = client.request(headers, { endStream: true });
      req.on('error', () => undefined);
      const before = blocks.length;
      await new Promise<void>((resolve, reject) => {
        const started = Date.now();
        const poll = (): void => {
          if (blocks.length > before) resolve();
          else if (Date.now() - started > 10_000) reject(new Error('no header block captured'));
          else setTimeout(poll, 5);
        };
        poll();
      });
    }
  } finally {
    client.destroy();
    server.close();
    await cleanup();
  }
  return blocks;
}

test('HPACK decoder: the header blocks nghttp2 writes (dynamic table, eviction, a size update, never-indexed, latin1)', async () => {
  const latin1 = Buffer.from(Array.from({ length: 95 }, (_, i) => 0xa0 + (i % 96))).toString('latin1');
  const requests: Array<http2.OutgoingHttpHeaders> = [];
  for (let i = 0; i < 12; i++) {
    requests.push({
      ':method': 'POST', ':path': `/v2.KeyManagementService/${i % 2 ? 'Encrypt' : 'Status'}`, ':authority': '%2Fvar%2Frun%2Fkms.sock',
      'content-type': 'application/grpc', 'te': 'trailers', 'grpc-timeout': '2999m', 'x-latin1': latin1,
      // From the 4th request on, big unique values push older entries out of a 1 KiB table.
      ...(i >= 3 ? { [`x-unique-${i}`]: 'v'.repeat(100 + i * 37) } : {}),
      'x-secret': `s${i}`,
      [http2.sensitiveHeaders]: ['x-secret'],
    });
  }
  const blocks = await nghttp2Blocks(requests, 1024);
  assert.equal(blocks.length, requests.length);
  const decoder = new HpackDecoder({ maxTableSize: 4096 });
  for (const [i, block] of blocks.entries()) {
    const fields = decoder.decode(block);
    const want = requests[i]!;
    for (const [name, value] of Object.entries(want)) {
      const got = fields.find((f) => f.name === name);
      assert.ok(got, `request ${i}: ${name} missing from ${JSON.stringify(fields.map((f) => f.name))}`);
      assert.equal(got.value, String(value), `request ${i}: ${name}`);
    }
    assert.equal(fields.find((f) => f.name === 'x-secret')?.neverIndex, true, 'a sensitive header arrives never-indexed');
    assert.equal(fields.find((f) => f.name === ':path')?.neverIndex, false);
  }
  assert.ok(blocks.some((b) => (b[0]! & 0xe0) === 0x20), 'one block starts with a dynamic table size update');
  // The third request repeats the first: its block is mostly dynamic-table indices.
  assert.ok(blocks[2]!.length < blocks[0]!.length / 4, `${blocks.map((b) => b.length).join(',')}`);
});

test('HPACK decoder: malformed blocks and bombs are refused with PLUGIN_HTTP2_MALFORMED', () => {
  const refuses = (block: Buffer, message: RegExp, decoder = new HpackDecoder()): void => {
    assert.throws(() => decoder.decode(block), (err: Error & { code?: string }) => err.code === 'PLUGIN_HTTP2_MALFORMED' && message.test(err.message));
  };
  refuses(hpack.indexed(0), /index 0/);
  refuses(hpack.indexed(62), /beyond the dynamic table/);
  refuses(Buffer.from([0xff]), /truncated integer/);
  refuses(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), /too large/);
  refuses(Buffer.from([0x00, 0x05, 0x61]), /longer than the block/);
  refuses(Buffer.from([0x0f]), /truncated/);
  refuses(hpack.sizeUpdate(4097), /above the 4096 allowed/);
  refuses(Buffer.concat([hpack.indexed(2), hpack.sizeUpdate(0)]), /size update after a header field/);
  refuses(hpack.literal('a', 'b', { huffman: false }).subarray(0, 3), /truncated string|longer than the block/);
  // A 4 KiB entry indexed again and again: a small block that would decode to megabytes.
  const decoder = new HpackDecoder({ maxHeaderListSize: 64 * 1024 });
  decoder.decode(hpack.incremental('x-big', 'a'.repeat(4000)));
  refuses(Buffer.alloc(100, 0xbe), /header list larger than 65536 bytes/, decoder); // 0xbe = indexed 62
  // An entry larger than the table empties it and is not added.
  const small = new HpackDecoder();
  small.decode(hpack.incremental('k', 'v'));
  small.decode(hpack.incremental('x', 'y'.repeat(5000)));
  refuses(hpack.indexed(62), /beyond the dynamic table/, small);
});

test('HPACK encoder: what it writes decodes to the same fields and never adds to the receiver\'s table', () => {
  const text = fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 300 });
  const fieldArb = fc.record({
    name: fc.oneof(fc.constantFrom(':authority', ':method', ':path', 'content-type', 'te', 'host', 'accept-encoding'), text),
    value: fc.oneof(fc.constantFrom('', 'POST', '/', 'gzip, deflate', 'http'), text),
    neverIndex: fc.boolean(),
  }).map((f): HeaderField => ({ ...f }));
  fc.assert(fc.property(fc.array(fieldArb, { maxLength: 20 }), (fields) => {
    const decoder = new HpackDecoder({ maxHeaderListSize: 1 << 20 });
    assert.deepEqual(decoder.decode(encodeWithoutIndexing(fields)), fields);
    assert.throws(() => decoder.decode(hpack.indexed(62)), /beyond the dynamic table/);
  }), { numRuns: RUNS });
  // Static pairs are sent as one index octet.
  assert.deepEqual([...encodeWithoutIndexing([field(':method', 'POST'), field(':scheme', 'http')])], [0x83, 0x86]);
});

test('authority rule: repairs a path, empty and absent authority (and host) in requests only', () => {
  const request = (...extra: HeaderField[]): HeaderField[] => [field(':method', 'POST'), field(':path', '/x'), ...extra];
  assert.equal(repairAuthority(request(field(':authority', 'localhost'))), undefined);
  assert.equal(repairAuthority(request(field(':authority', '%2Frun%2Fkms.sock'))), undefined);
  assert.equal(repairAuthority(request(field('host', 'localhost'))), undefined, 'host alone satisfies nghttp2');
  assert.equal(repairAuthority([field('grpc-status', '0')]), undefined, 'trailers are not requests');
  const path = repairAuthority(request(field(':authority', '/run/kms.sock', true)));
  assert.deepEqual(path, { fields: request(field(':authority', 'localhost', true)), original: '/run/kms.sock', problem: 'invalid-characters' });
  assert.deepEqual(repairAuthority(request(field(':authority', ''))), { fields: request(field(':authority', 'localhost')), original: '', problem: 'empty' });
  assert.deepEqual(repairAuthority(request()), { fields: [field(':authority', 'localhost'), ...request()], original: undefined, problem: 'absent' });
  assert.deepEqual(repairAuthority(request(field(':authority', 'localhost'), field('host', 'a b')))?.fields, request(field(':authority', 'localhost'), field('host', 'localhost')));
});

test('ClientStream: any chunking gives the same verdict, the exact bytes less our ACK (native), the same repaired frames', () => {
  const request = (authority: string, id: number) => headersFrames(id, grpcRequestBlock('/v2.KeyManagementService/Status', hpack.incremental(':authority', authority, true)), { pad: 2, priority: true, fragment: 20 });
  const ping = Buffer.concat([frameHeader(8, FrameType.PING, 0, 0), Buffer.alloc(8, 7)]);
  const wire = (authority: string) => Buffer.concat([CLIENT_PREFACE, EMPTY_SETTINGS_FRAME, ping, request(authority, 1), SETTINGS_ACK, request(authority, 3), hpack.indexed(62)]);
  const feedAll = (bytes: Buffer, cuts: number[]) => {
    let repaired = 0;
    const stream = new ClientStream({ onFirstRepair: () => repaired++ });
    let verdict = stream.verdict();
    let out: Buffer[] = [];
    let last = 0;
    for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
      const chunk = bytes.subarray(last, cut);
      last = cut;
      if (chunk.length === 0) continue;
      if (verdict === 'repair') out.push(...stream.feed(chunk));
      else if (verdict === 'wait') {
        stream.feed(chunk);
        verdict = stream.verdict();
        if (verdict === 'repair') out = stream.startRepair();
        if (verdict === 'native') out = [stream.nativeBytes(), bytes.subarray(last)];
      }
    }
    return { verdict, bytes: Buffer.concat(out), repaired };
  };
  const good = wire('localhost');
  const withoutAck = Buffer.concat([good.subarray(0, good.indexOf(SETTINGS_ACK)), good.subarray(good.indexOf(SETTINGS_ACK) + 9)]);
  const bad = wire('/run/kms.sock');
  const reference = feedAll(bad, []);
  assert.equal(reference.verdict, 'repair');
  fc.assert(fc.property(fc.array(fc.nat(good.length), { maxLength: 12 }), (cuts) => {
    const native = feedAll(good, cuts);
    assert.equal(native.verdict, 'native');
    assert.ok(native.bytes.equals(withoutAck));
    const repaired = feedAll(bad, cuts);
    assert.equal(repaired.verdict, 'repair');
    assert.ok(repaired.bytes.equals(reference.bytes));
    assert.equal(repaired.repaired, 1);
  }), { numRuns: RUNS });
  // The repaired stream decodes to requests carrying localhost, with no ACK and no padding left.
  assert.equal(reference.bytes.indexOf(SETTINGS_ACK), -1);
  assert.ok(reference.bytes.includes(Buffer.from('localhost')));
  assert.equal(reference.bytes.indexOf(Buffer.from('/run/kms.sock')), -1);
});
