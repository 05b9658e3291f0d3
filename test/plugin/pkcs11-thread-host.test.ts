// The host side of --pkcs11-call-mode thread (src/plugin/pkcs11/thread-host.ts) with a thread that
// blocks on demand: a real Worker whose request handler blocks in Atomics.wait, as a thread inside
// a PKCS#11 call of a frozen HSM does (the real module behind a frozen p11-kit server cannot be
// reached with the backend's mechanisms: pkcs11-remote.test.ts). Checks what the host promises:
// while a call hangs the key_id still answers, new calls fail at once, the hang ends in an answer,
// and a close that the thread cannot answer leaves it recorded as stuck.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { BackendError } from '../../src/plugin/backend.js';
import type { Pkcs11Config } from '../../src/plugin/pkcs11/config.js';
import { ThreadedPkcs11Kek, stuckPkcs11Threads } from '../../src/plugin/pkcs11/thread-host.js';
import { inProcessLogger } from '../helpers/test-log.js';

const config: Pkcs11Config = { modulePath: '/nowhere/module.so', tokenLabel: 'tok', keyLabel: 'kek', pin: 'unused', mechanism: 'auto', sessions: 1, callMode: 'thread' };

// Answers open at once; every request first waits until the host raises the gate (gate[0] = 1).
const body = `
const { parentPort, workerData } = require('node:worker_threads');
const gate = new Int32Array(workerData.gate);
const key = { keyId: 'pkcs11:tok:kek:01', createdAt: undefined };
parentPort.postMessage({ t: 'ready' });
parentPort.postMessage({ t: 'reply', id: 0, ok: true, key });
parentPort.on('message', (r) => {
  Atomics.wait(gate, 0, 0);
  if (r.op === 'close') { parentPort.postMessage({ t: 'reply', id: r.id, ok: true, key }); parentPort.close(); return; }
  parentPort.postMessage({ t: 'reply', id: r.id, ok: true, data: new Uint8Array([r.op === 'encrypt' ? 1 : 2]), keyId: key.keyId, key });
});`;

function hangingThread(): { open(): Promise<ThreadedPkcs11Kek>; release(): void } {
  const gate = new SharedArrayBuffer(4);
  return {
    open: () => ThreadedPkcs11Kek.open(config, inProcessLogger('kms-plugin'), 300, () => new Worker(body, { eval: true, workerData: { gate } })),
    release: () => { Atomics.store(new Int32Array(gate), 0, 1); Atomics.notify(new Int32Array(gate), 0); },
  };
}

const unavailable = (re: RegExp) => (e: unknown): boolean => e instanceof BackendError && e.code === 'UNAVAILABLE' && re.test(e.message);

test('a call that hangs in the thread: key_id still answers, new calls fail at once naming the token, and the hung call answers once the thread returns', async () => {
  const t = hangingThread();
  const kek = await t.open();
  const hung = kek.encrypt(Buffer.alloc(32, 7));
  await new Promise((r) => setTimeout(r, 400)); // past the 300 ms bound
  assert.equal(await kek.currentKeyId(), 'pkcs11:tok:kek:01');
  await assert.rejects(kek.decrypt(Buffer.alloc(40)), unavailable(/token "tok" \(PKCS#11 module \/nowhere\/module\.so\) has not returned from a call/));
  await assert.rejects(kek.refresh(), unavailable(/has not returned from a call/));
  t.release();
  assert.deepEqual((await hung).ciphertext, Buffer.from([1]));
  assert.deepEqual(await kek.decrypt(Buffer.alloc(40)), Buffer.from([2]), 'calls go through again');
  await kek.close();
  assert.equal(stuckPkcs11Threads(), 0);
  await assert.rejects(kek.encrypt(Buffer.alloc(32)), unavailable(/closed/));
});

test('closing while the thread hangs does not wait for it: pending calls fail, the thread is recorded as stuck until it returns', async () => {
  const t = hangingThread();
  const kek = await t.open();
  const hung = kek.encrypt(Buffer.alloc(32, 7)).then(() => 'answered', (e: unknown) => (e instanceof BackendError ? e.code : String(e)));
  await kek.close();
  assert.equal(await hung, 'UNAVAILABLE');
  assert.equal(stuckPkcs11Threads(), 1, 'the plugin must exit without joining this thread');
  t.release();
  await new Promise<void>((resolve, reject) => {
    const deadline = Date.now() + 10_000;
    const poll = (): void => { if (stuckPkcs11Threads() === 0) resolve(); else if (Date.now() > deadline) reject(new Error('thread never ended')); else setTimeout(poll, 20); };
    poll();
  });
});
