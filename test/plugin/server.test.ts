// The plugin server in-process over real UNIX sockets, called with a plain grpc-js client:
// both APIs, limits, error mapping, socket handling, rotation, concurrency, graceful close, health.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import pino from 'pino';
import net from 'node:net';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { newRegistry } from '../../src/metrics.js';
import { BackendError, type KekBackend, type WrapResult } from '../../src/plugin/backend.js';
import { localBackend } from '../../src/plugin/backends/local.js';
import { parseHostPort, startHealthServer } from '../../src/plugin/health-server.js';
import { keyIdHash } from '../../src/plugin/metrics.js';
import { startPluginServer, type PluginServer, type PluginServerOptions } from '../../src/plugin/server.js';
import { grpcCodeOf, makeTempDir, TestKmsClient, waitFor } from '../helpers/plugin.js';
import { inProcessLogger } from '../helpers/test-log.js';

const ctx = { log: inProcessLogger('kms-plugin') };

interface Env {
  dir: string;
  keyFile: string;
  backend: KekBackend;
  server: PluginServer;
  client: TestKmsClient;
  socket: string;
}

async function withServer(fn: (env: Env) => Promise<void>, options: Partial<PluginServerOptions> = {}, wrap?: (b: KekBackend) => KekBackend): Promise<void> {
  const { dir, cleanup } = await makeTempDir();
  const keyFile = join(dir, 'kek.json');
  await localBackend.initKey({ keyFile }, ctx);
  const local = await localBackend.open({ keyFile }, ctx);
  const backend = wrap ? wrap(local) : local;
  const socket = join(dir, 'kms.sock');
  const server = await startPluginServer({ listen: `unix://${socket}`, backend, refreshIntervalMs: 100, log: ctx.log, ...options });
  const client = TestKmsClient.forPath(socket);
  try {
    await fn({ dir, keyFile, backend, server, client, socket });
  } finally {
    client.close();
    await server.close();
    await local.close();
    await cleanup();
  }
}

async function rejectsWith(promise: Promise<unknown>, code: GrpcStatus, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: Error & { details?: string }) => {
    assert.equal(grpcCodeOf(err), code, `${err.message}`);
    if (message) assert.match(err.details ?? err.message, message);
    return true;
  });
}

test('v1beta1: Version answers v1beta1/atrest; Encrypt/Decrypt round trip; other request versions are InvalidArgument', async () => {
  await withServer(async ({ client }) => {
    const v = await client.version();
    assert.equal(v.version, 'v1beta1');
    assert.equal(v.runtimeName, 'atrest');
    assert.ok(v.runtimeVersion.length > 0);
    const dek = randomBytes(32);
    const { cipher } = await client.v1Encrypt(dek);
    assert.ok(cipher.length > 32 && cipher.length <= 1024);
    assert.deepEqual(Buffer.from((await client.v1Decrypt(cipher)).plain), dek);
    await rejectsWith(client.version('v1'), GrpcStatus.INVALID_ARGUMENT, /unsupported KMS API version "v1"/);
    await rejectsWith(client.v1Encrypt(dek, ''), GrpcStatus.INVALID_ARGUMENT, /version ""/);
    await rejectsWith(client.v1Decrypt(cipher, 'v2'), GrpcStatus.INVALID_ARGUMENT);
    const bad = Buffer.from(cipher);
    bad[bad.length - 1]! ^= 1;
    await rejectsWith(client.v1Decrypt(bad), GrpcStatus.INVALID_ARGUMENT, /does not authenticate/);
  });
});

test('v2: Status is healthy with the current key_id; Encrypt/Decrypt round trip; limits are InvalidArgument', async () => {
  await withServer(async ({ client, backend }) => {
    const s = await client.status();
    assert.equal(s.version, 'v2beta1');
    assert.equal(s.healthz, 'ok');
    assert.equal(s.keyId, await backend.currentKeyId());
    const dek = randomBytes(32);
    const enc = await client.encrypt(dek);
    assert.equal(enc.keyId, s.keyId);
    assert.ok(enc.ciphertext.length <= 1024);
    assert.equal(Object.keys(enc.annotations).length, 0);
    assert.deepEqual(Buffer.from((await client.decrypt(enc.ciphertext, enc.keyId)).plaintext), dek);
    const tampered = Buffer.from(enc.ciphertext);
    tampered[20]! ^= 0x80;
    await rejectsWith(client.decrypt(tampered, enc.keyId), GrpcStatus.INVALID_ARGUMENT);
    await rejectsWith(client.decrypt(randomBytes(1025), enc.keyId), GrpcStatus.INVALID_ARGUMENT, /1025 bytes, more than 1024/);
    await rejectsWith(client.decrypt(enc.ciphertext, 'k'.repeat(1025)), GrpcStatus.INVALID_ARGUMENT, /key_id is 1025 bytes/);
    await rejectsWith(client.decrypt(Buffer.alloc(0), enc.keyId), GrpcStatus.INVALID_ARGUMENT, /empty/);
    await rejectsWith(client.encrypt(Buffer.alloc(0)), GrpcStatus.INVALID_ARGUMENT, /plaintext is empty/);
    await rejectsWith(client.encrypt(randomBytes(513)), GrpcStatus.INVALID_ARGUMENT, /513 bytes/);
    await rejectsWith(client.decrypt(randomBytes(200), enc.keyId), GrpcStatus.INVALID_ARGUMENT);
    // a message far over the size bound is refused by gRPC itself
    await rejectsWith(client.decrypt(randomBytes(100 * 1024), enc.keyId), GrpcStatus.RESOURCE_EXHAUSTED);
    // the server is still fine
    assert.equal((await client.status()).healthz, 'ok');
  });
});

test('v2 Status version can be v2; the 1.25/1.26 name v2alpha1.KeyManagementService answers v2alpha1', async () => {
  await withServer(async ({ client }) => {
    assert.equal((await client.status()).version, 'v2');
    const s = await client.status('v2alpha1');
    assert.equal(s.version, 'v2alpha1');
    assert.equal(s.healthz, 'ok');
    const enc = await client.encrypt(Buffer.from('seed'), 'v2alpha1');
    assert.equal((await client.decrypt(enc.ciphertext, enc.keyId)).plaintext.toString(), 'seed');
  }, { statusVersion: 'v2' });
});

test('the socket is mode 0600 and no private binding directory is left behind', async () => {
  await withServer(async ({ socket, dir }) => {
    const info = await lstat(socket);
    assert.ok(info.isSocket());
    assert.equal(info.mode & 0o777, 0o600);
    assert.deepEqual((await readdir(dir)).sort(), ['kek.json', 'kms.sock']);
  });
});

test('a socket path too long for the private binding directory is bound in place, still 0600', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const keyFile = join(dir, 'kek.json');
    await localBackend.initKey({ keyFile }, ctx);
    const backend = await localBackend.open({ keyFile }, ctx);
    // the target fits in sun_path (107 bytes) but `<dir>/.kms.sock-XXXXXX/s` does not
    const deep = join(dir, 'd'.repeat(Math.max(1, 95 - Buffer.byteLength(dir) - 1)));
    await mkdir(deep, { mode: 0o700 });
    const socket = join(deep, 'kms.sock');
    assert.ok(Buffer.byteLength(socket) <= 107 && Buffer.byteLength(socket) + 10 > 107, `${Buffer.byteLength(socket)}`);
    const server = await startPluginServer({ listen: `unix://${socket}`, backend, log: ctx.log });
    const client = TestKmsClient.forPath(socket);
    try {
      assert.equal((await lstat(socket)).mode & 0o777, 0o600);
      assert.equal((await client.status()).healthz, 'ok');
    } finally {
      client.close();
      await server.close();
      await backend.close();
    }
    await assert.rejects(lstat(socket), /ENOENT/);
  } finally {
    await cleanup();
  }
});

test('a stale socket file is replaced; a live socket, and a path that is not a socket, are refused', async () => {
  await withServer(async ({ dir, backend, client, socket }) => {
    const stale = join(dir, 'stale.sock');
    // a socket file nobody listens on (what a crash leaves)
    const made = spawnSync('/usr/bin/python3', ['-c', 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])', stale]);
    assert.equal(made.status, 0, made.stderr.toString());
    assert.ok((await lstat(stale)).isSocket());
    const second = await startPluginServer({ listen: `unix://${stale}`, backend, log: ctx.log });
    const c2 = TestKmsClient.forPath(stale);
    try {
      assert.equal((await c2.status()).healthz, 'ok');
      assert.equal((await lstat(stale)).mode & 0o777, 0o600);
    } finally {
      c2.close();
      await second.close();
    }
    await assert.rejects(lstat(stale), /ENOENT/, 'removed on close');

    await assert.rejects(startPluginServer({ listen: `unix://${socket}`, backend, log: ctx.log }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'PLUGIN_SOCKET_IN_USE');
      assert.ok(err.message.includes(socket));
      return true;
    });
    assert.equal((await client.status()).healthz, 'ok', 'the live server is undisturbed');
    assert.ok((await lstat(socket)).isSocket());

    const regular = join(dir, 'regular');
    await writeFile(regular, 'data');
    await assert.rejects(startPluginServer({ listen: `unix://${regular}`, backend, log: ctx.log }), /exists and is not a socket/);
  });
});

test('--listen must be unix:///path or unix:///@name', async () => {
  const backend = { kind: 'none' } as unknown as KekBackend;
  for (const bad of ['tcp://127.0.0.1:1', '/plain/path', 'unix://host/x', 'unix:///@', 'unix:///tmp/']) {
    await assert.rejects(startPluginServer({ listen: bad, backend, log: ctx.log }), (err: Error & { code?: string }) => err.code === 'PLUGIN_LISTEN_INVALID', bad);
  }
});

test('abstract sockets: unix:///@name serves, and a second server on the name is refused', async () => {
  const name = `atrest-test-${randomBytes(6).toString('hex')}`;
  await withServer(async ({ backend }) => {
    const server = await startPluginServer({ listen: `unix:///@${name}`, backend, log: ctx.log });
    const client = TestKmsClient.forAbstract(name);
    try {
      assert.equal(server.endpoint, `unix:///@${name}`);
      const enc = await client.encrypt(Buffer.from('abstract'));
      assert.equal((await client.decrypt(enc.ciphertext, enc.keyId)).plaintext.toString(), 'abstract');
      await assert.rejects(startPluginServer({ listen: `unix:///@${name}`, backend, log: ctx.log }), (err: Error & { code?: string }) => err.code === 'PLUGIN_SOCKET_IN_USE');
    } finally {
      client.close();
      await server.close();
    }
  });
});

test('garbage and abruptly closed connections do not disturb the server', async () => {
  await withServer(async ({ socket, client }) => {
    for (const payload of ['GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04garbage', '\x16\x03\x01 not tls either']) {
      await new Promise<void>((resolve) => {
        const c = net.connect({ path: socket }, () => {
          c.write(payload);
          setTimeout(() => { c.destroy(); resolve(); }, 20);
        });
        c.on('error', () => resolve());
      });
    }
    const half = net.connect({ path: socket });
    await new Promise((r) => half.once('connect', r));
    half.destroy();
    const enc = await client.encrypt(Buffer.from('still here'));
    assert.equal((await client.decrypt(enc.ciphertext, enc.keyId)).plaintext.toString(), 'still here');
  });
});

test('concurrent calls from several connections all succeed and stay correct', async () => {
  await withServer(async ({ client, socket }) => {
    const others = Array.from({ length: 3 }, () => TestKmsClient.forPath(socket));
    try {
      const clients = [client, ...others];
      const results = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
        const c = clients[i % clients.length]!;
        const dek = randomBytes(32);
        if (i % 2 === 0) {
          const enc = await c.encrypt(dek);
          return Buffer.from((await c.decrypt(enc.ciphertext, enc.keyId)).plaintext).equals(dek);
        }
        const { cipher } = await c.v1Encrypt(dek);
        return Buffer.from((await c.v1Decrypt(cipher)).plain).equals(dek);
      }));
      assert.equal(results.filter(Boolean).length, 200);
    } finally {
      for (const c of others) c.close();
    }
  });
});

test('rotation while serving: Status reports the new key_id within the refresh interval, old ciphertexts still decrypt', async () => {
  await withServer(async ({ client, keyFile, server }) => {
    const before = await client.status();
    const oldV2 = await client.encrypt(Buffer.from('old-v2'));
    const oldV1 = await client.v1Encrypt(Buffer.from('old-v1'));
    const newKeyId = await localBackend.rotateKey({ keyFile }, ctx);
    assert.notEqual(newKeyId, before.keyId);
    const after = await waitFor('Status to report the rotated key_id', async () => {
      const s = await client.status();
      return s.keyId === newKeyId ? s : undefined;
    });
    assert.equal(after.healthz, 'ok');
    const fresh = await client.encrypt(Buffer.from('new'));
    assert.equal(fresh.keyId, newKeyId);
    assert.equal((await client.decrypt(oldV2.ciphertext, oldV2.keyId)).plaintext.toString(), 'old-v2');
    assert.equal(Buffer.from((await client.v1Decrypt(oldV1.cipher)).plain).toString(), 'old-v1');
    const metrics = await server.metrics.metrics();
    assert.ok(metrics.includes(`atrest_kms_plugin_current_key_id_hash_info{key_id_hash="${keyIdHash(newKeyId)}"} 1`), metrics);
    assert.ok(!metrics.includes(keyIdHash(before.keyId)), 'the old key_id hash is no longer current');
    assert.match(metrics, /atrest_kms_plugin_key_rotations_total 1/);
  });
});

/** A backend wrapper that injects faults (the only fake here). */
class FaultyBackend implements KekBackend {
  readonly kind = 'faulty';
  fault: 'none' | 'unavailable' | 'key-not-found' | 'key-retired' | 'foreign' | 'huge' = 'none';
  gate: Promise<void> | undefined;
  decrypting = 0;
  constructor(private readonly inner: KekBackend) {}
  currentKeyId(): Promise<string> { return this.inner.currentKeyId(); }
  private check(): void {
    if (this.fault === 'unavailable') throw new BackendError('UNAVAILABLE', 'HSM not reachable');
    if (this.fault === 'key-not-found') throw new BackendError('KEY_NOT_FOUND', 'no such key object');
    if (this.fault === 'key-retired') throw new BackendError('KEY_RETIRED', 'key version k is retired: restore it with `atrest kms-plugin restore-key --key-id k`');
    if (this.fault === 'foreign') throw new TypeError('secret-looking detail 0xdeadbeef');
  }
  async encrypt(plaintext: Uint8Array): Promise<WrapResult> {
    this.check();
    if (this.fault === 'huge') return { ciphertext: Buffer.alloc(2000), keyId: 'k' };
    return this.inner.encrypt(plaintext);
  }
  async decrypt(ciphertext: Uint8Array): Promise<Buffer> {
    this.decrypting++;
    if (this.gate) await this.gate;
    this.check();
    return this.inner.decrypt(ciphertext);
  }
  refresh(): Promise<void> { return this.inner.refresh(); }
  close(): Promise<void> { return this.inner.close(); }
}

test('backend errors map to gRPC codes, never crash the server, and make Status unhealthy with the reason', async () => {
  let faulty: FaultyBackend | undefined;
  await withServer(async ({ client }) => {
    const f = faulty!;
    const good = await client.encrypt(Buffer.from('x'));
    f.fault = 'unavailable';
    await rejectsWith(client.encrypt(Buffer.from('x')), GrpcStatus.UNAVAILABLE, /HSM not reachable/);
    await rejectsWith(client.v1Decrypt(good.ciphertext), GrpcStatus.UNAVAILABLE);
    const unhealthy = await waitFor('Status to turn unhealthy', async () => {
      const s = await client.status();
      return s.healthz !== 'ok' ? s : undefined;
    });
    assert.match(unhealthy.healthz, /round trip through the faulty backend failed: HSM not reachable/);
    assert.ok(unhealthy.keyId.length > 0, 'key_id still reported');
    f.fault = 'key-not-found';
    await rejectsWith(client.decrypt(good.ciphertext, good.keyId), GrpcStatus.INTERNAL, /no such key object/);
    // A retired KEK version: FailedPrecondition, which atrest verify reports as "restore it", not as lost.
    f.fault = 'key-retired';
    await rejectsWith(client.decrypt(good.ciphertext, good.keyId), GrpcStatus.FAILED_PRECONDITION, /is retired: restore it with/);
    f.fault = 'foreign';
    await assert.rejects(client.encrypt(Buffer.from('x')), (err: Error & { details?: string }) => {
      assert.equal(grpcCodeOf(err), GrpcStatus.INTERNAL);
      assert.ok(!(err.details ?? '').includes('deadbeef'), 'foreign error text is not passed on');
      return true;
    });
    f.fault = 'huge';
    await rejectsWith(client.encrypt(Buffer.from('x')), GrpcStatus.INTERNAL, /2000-byte ciphertext/);
    f.fault = 'none';
    await waitFor('Status to recover', async () => (await client.status()).healthz === 'ok');
    assert.equal((await client.decrypt(good.ciphertext, good.keyId)).plaintext.toString(), 'x');
  }, { healthSuccessTtlMs: 100, healthFailureTtlMs: 50 }, (b) => (faulty = new FaultyBackend(b)));
});

test('close() stops accepting, lets in-flight calls finish, and removes the socket', async () => {
  let faulty: FaultyBackend | undefined;
  const { dir, cleanup } = await makeTempDir();
  try {
    const keyFile = join(dir, 'kek.json');
    await localBackend.initKey({ keyFile }, ctx);
    const local = await localBackend.open({ keyFile }, ctx);
    faulty = new FaultyBackend(local);
    const socket = join(dir, 'kms.sock');
    const server = await startPluginServer({ listen: `unix://${socket}`, backend: faulty, log: ctx.log });
    const client = TestKmsClient.forPath(socket);
    const enc = await client.encrypt(Buffer.from('in-flight'));
    let release!: () => void;
    faulty.gate = new Promise((r) => { release = r; });
    const pending = client.decrypt(enc.ciphertext, enc.keyId);
    await waitFor('the call to reach the backend', () => faulty!.decrypting > 0);
    const closing = server.close();
    await waitFor('the socket file to be removed', async () => lstat(socket).then(() => false, () => true));
    release();
    assert.equal(Buffer.from((await pending).plaintext).toString(), 'in-flight');
    await closing;
    client.close();
    const late = new TestKmsClient(`unix:${socket}`, 300);
    await assert.rejects(late.status(), (err) => grpcCodeOf(err) === GrpcStatus.DEADLINE_EXCEEDED || grpcCodeOf(err) === GrpcStatus.UNAVAILABLE);
    late.close();
    await local.close();
  } finally {
    await cleanup();
  }
});

test('health endpoint: /healthz does a real round trip through the socket, /livez, /metrics, 404', async () => {
  let faulty: FaultyBackend | undefined;
  await withServer(async ({ server, backend }) => {
    const metrics = server.metrics;
    const health = await startHealthServer({ listen: '127.0.0.1:0', socket: server.address, metrics, log: ctx.log });
    try {
      const base = `http://${health.address}`;
      const ok = await fetch(`${base}/healthz`);
      assert.equal(ok.status, 200);
      assert.equal(await ok.text(), 'ok\n');
      assert.equal((await fetch(`${base}/livez`)).status, 200);
      const text = await (await fetch(`${base}/metrics`)).text();
      assert.ok(text.includes('atrest_kms_plugin_operations_total{api_version="v2",method="Encrypt",outcome="OK"}'), text);
      assert.ok(text.includes(`key_id_hash="${keyIdHash(await backend.currentKeyId())}"`));
      assert.equal((await fetch(`${base}/nope`)).status, 404);
      faulty!.fault = 'unavailable';
      const bad = await fetch(`${base}/healthz`);
      assert.equal(bad.status, 503);
      assert.match(await bad.text(), /HSM not reachable/);
      const after = await (await fetch(`${base}/metrics`)).text();
      assert.match(after, /api_version="v2",method="Encrypt",outcome="Unavailable"} 1/);
    } finally {
      await health.close();
    }
  }, {}, (b) => (faulty = new FaultyBackend(b)));
});

test('--health-listen must be host:port', async () => {
  assert.deepEqual(parseHostPort('127.0.0.1:8081'), { host: '127.0.0.1', port: 8081 });
  assert.deepEqual(parseHostPort('[::1]:0'), { host: '::1', port: 0 });
  for (const bad of ['8081', '127.0.0.1', ':80', '127.0.0.1:99999', '[x]:1']) assert.throws(() => parseHostPort(bad), /--health-listen/, bad);
});

test('metrics: operations counted by api version, method and outcome', async () => {
  const metrics = newRegistry();
  await withServer(async ({ client }) => {
    await client.version();
    await client.v1Encrypt(Buffer.from('a'));
    await client.v1Decrypt(Buffer.from('garbage')).catch(() => undefined);
    const text = await metrics.metrics();
    assert.match(text, /atrest_kms_plugin_operations_total\{api_version="v1beta1",method="Version",outcome="OK"\} 1/);
    assert.match(text, /atrest_kms_plugin_operations_total\{api_version="v1beta1",method="Encrypt",outcome="OK"\} 1/);
    assert.match(text, /atrest_kms_plugin_operations_total\{api_version="v1beta1",method="Decrypt",outcome="InvalidArgument"\} 1/);
    assert.match(text, /atrest_kms_plugin_operation_duration_seconds_count\{api_version="v1beta1",method="Encrypt"\} 1/);
  }, { metrics });
});

test('a socket directory others may write to (no sticky bit) is warned about in the log', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString())); done(); } });
  const log = pino({ level: 'info' }, sink);
  await withServer(async ({ dir, backend }) => {
    const shared = join(dir, 'shared');
    await mkdir(shared);
    await chmod(shared, 0o777);
    const server = await startPluginServer({ listen: `unix://${join(shared, 'kms.sock')}`, backend, log });
    await server.close();
    assert.ok(lines.some((l) => l['event'] === 'socket-dir-shared' && l['dir'] === shared), JSON.stringify(lines));
    lines.length = 0;
    const own = await startPluginServer({ listen: `unix://${join(dir, 'own.sock')}`, backend, log });
    await own.close();
    assert.ok(!lines.some((l) => l['event'] === 'socket-dir-shared'), 'no warning for a private directory');
  });
});
