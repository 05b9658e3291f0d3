// The pkcs11 backend with the HSM in another process: a SoftHSM token exported by a real
// `p11-kit server` (test/helpers/p11kit.ts), reached through p11-kit-client.so, as a networked HSM
// is reached through its vendor's client module. What it shows (RELIABILITY.md §10):
//   - p11-kit 0.24 (Debian 12) forwards slots, login, sessions, C_FindObjects and attribute reads,
//     but neither CKM_AES_GCM nor CKM_AES_KEY_WRAP_PAD: the backend cannot wrap through it and
//     fails closed saying so (so the serving outage of hierarchy-pkcs11.test.ts stays injected);
//   - a plugin started while the HSM is frozen or stopped fails closed naming the module, the token
//     and the server address, within --remote-kek-timeout (--pkcs11-call-mode thread: the module
//     call that hangs blocks the backend's thread, not the plugin);
//   - --pkcs11-call-mode thread serves round trips with a real SoftHSM and follows rotate-key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BackendError, type BackendOptions } from '../../src/plugin/backend.js';
import { pkcs11Backend } from '../../src/plugin/backends/pkcs11.js';
import { LOCAL_KEK_ANNOTATION } from '../../src/plugin/hierarchy/envelope.js';
import { CKR, ckrOf } from '../../src/plugin/pkcs11/ckr.js';
import { listKeyVersions } from '../../src/plugin/pkcs11/key-objects.js';
import { processPkcs11Loader } from '../../src/plugin/pkcs11/library.js';
import { closeSessions, openTokenSessions } from '../../src/plugin/pkcs11/token.js';
import { startLoad } from '../helpers/hierarchy.js';
import { P11KIT_CLIENT_MODULE, startP11KitServer, type P11KitServer } from '../helpers/p11kit.js';
import { PluginProcess, TestKmsClient, runAtrest, waitFor } from '../helpers/plugin.js';
import { createSoftHsm, type SoftHsm } from '../helpers/softhsm.js';
import { inProcessLogger, registerTestSecret } from '../helpers/test-log.js';

const log = inProcessLogger('kms-plugin');
const KEY = 'remote-kek';
let hsm: SoftHsm;
let srv: P11KitServer;
let keyId: string;

before(async () => {
  hsm = await createSoftHsm({ tokenLabel: 'atrest-remote' });
  registerTestSecret(hsm.token.pin, 'pkcs11-pin');
  // The key is made on SoftHSM directly (C_GenerateKey of an AES key would pass p11-kit too).
  keyId = await pkcs11Backend.initKey(direct(), { log });
  srv = await startP11KitServer(hsm, hsm.token.label, join(hsm.dir, 'p11-kit.sock'));
});

after(async () => {
  await srv?.stop();
  await hsm?.cleanup();
});

function direct(): BackendOptions {
  return { pkcs11Module: hsm.modulePath, pkcs11TokenLabel: hsm.token.label, pkcs11PinFile: hsm.token.pinFile, pkcs11KeyLabel: KEY };
}

function pluginEnv(module: string, callMode: string): NodeJS.ProcessEnv {
  return {
    ...hsm.env,
    ...srv.env,
    ATREST_KMS_PLUGIN_BACKEND: 'pkcs11',
    ATREST_PKCS11_MODULE: module,
    ATREST_PKCS11_TOKEN_LABEL: hsm.token.label,
    ATREST_PKCS11_PIN_FILE: hsm.token.pinFile,
    ATREST_PKCS11_KEY_LABEL: KEY,
    ATREST_PKCS11_CALL_MODE: callMode,
  };
}

test('p11-kit 0.24 remoting: slots, login, C_FindObjects and attribute reads pass; AES-GCM and AES key wrap do not, and the backend fails closed saying so', async () => {
  process.env['P11_KIT_SERVER_ADDRESS'] = srv.address;
  const lib = await processPkcs11Loader.acquire(P11KIT_CLIENT_MODULE);
  try {
    const opened = openTokenSessions(lib, hsm.token.label, hsm.token.pin, 1, false);
    try {
      const session = opened.sessions[0]!;
      const versions = listKeyVersions(lib, session, hsm.token.label, KEY);
      assert.deepEqual(versions.map((v) => v.keyId), [keyId], 'the key object, its CKA_ID and attributes, read through the server');
      assert.ok(opened.mechanisms.has(lib.k.CKM_AES_KEY_GEN), 'the mechanism list is forwarded');
      assert.equal(opened.mechanisms.has(lib.k.CKM_AES_GCM), false, 'CKM_AES_GCM is not (p11-kit 0.24 cannot forward its parameters)');
      assert.equal(opened.mechanisms.has(lib.k.CKM_AES_KEY_WRAP_PAD), false, 'CKM_AES_KEY_WRAP_PAD is not');
      const gcm = { mechanism: lib.k.CKM_AES_GCM, parameter: { type: lib.k.CK_PARAMS_AES_GCM_v240, iv: randomBytes(12), ivBits: 96, aad: Buffer.alloc(0), tagBits: 128 } };
      assert.throws(() => lib.api.C_EncryptInit(session, gcm, versions[0]!.handle), (e: unknown) => ckrOf(e) === CKR.MECHANISM_INVALID);
    } finally {
      closeSessions(lib, opened.sessions);
    }
  } finally {
    lib.release();
  }
  await assert.rejects(pkcs11Backend.open({ ...direct(), pkcs11Module: P11KIT_CLIENT_MODULE }, { log }), (e: unknown) => {
    assert.ok(e instanceof BackendError && e.code === 'CONFIG', String(e));
    assert.match(e.message, /offers neither CKM_AES_GCM nor CKM_AES_KEY_WRAP_PAD .*p11-kit-client\.so before p11-kit 0\.25/);
    return true;
  });
});

test('a plugin started while the p11-kit server is frozen, then stopped, fails closed within --remote-kek-timeout naming the module, token and server (--pkcs11-call-mode thread)', async () => {
  const endpoint = `PKCS#11 token "${hsm.token.label}" (module ${P11KIT_CLIENT_MODULE}, P11_KIT_SERVER_ADDRESS ${srv.address}), key "${KEY}"`;
  const startDuring = async (): Promise<PluginProcess> => {
    const p = new PluginProcess(['--listen', `unix://${join(hsm.dir, 'never.sock')}`, '--remote-kek-timeout', '1s'], pluginEnv(P11KIT_CLIENT_MODULE, 'thread'));
    assert.notEqual(await p.exited, 0, 'it does not serve');
    assert.ok(!p.logs.some((l) => l.event === 'start'));
    assert.ok(p.stderrLines.some((l) => l.includes(`cannot open the remote KEK (${endpoint})`)), p.stderrLines.join('\n'));
    return p;
  };
  srv.freeze();
  try {
    const frozen = await startDuring();
    assert.ok(frozen.stderrLines.some((l) => /did not answer within 1000 ms while opening/.test(l)), frozen.stderrLines.join('\n'));
    // The thread stays inside the module call; the plugin said so and ended without waiting for it.
    assert.ok(frozen.logs.some((l) => l.event === 'exit-hsm-call-abandoned'));
  } finally {
    await srv.stop();
  }
  try {
    const stopped = await startDuring();
    // p11-kit-client initialises without its server and then lists no slot.
    assert.ok(stopped.stderrLines.some((l) => l.includes('no initialised token is present: is the HSM reachable?')), stopped.stderrLines.join('\n'));
  } finally {
    await srv.start();
  }
});

test('--pkcs11-call-mode thread: the backend on its own thread serves kms v1 and v2 under the key hierarchy, follows rotate-key, and its log lines reach the plugin log', async () => {
  const socket = join(hsm.dir, 'thread.sock');
  const plugin = new PluginProcess(['--listen', `unix://${socket}`, '--refresh-interval', '200'], pluginEnv(hsm.modulePath, 'thread'));
  const client = TestKmsClient.forPath(socket);
  try {
    await plugin.waitForEvent('start');
    const opened = await plugin.waitForEvent('pkcs11-open');
    assert.equal(opened['callMode'], 'sync', 'calls are synchronous on the backend thread');
    assert.equal((await client.status()).keyId, keyId);
    const load = startLoad(client);
    await waitFor('round trips', () => load.counts.v1 > 20 && load.counts.v2 > 20);
    const rot = await runAtrest(['kms-plugin', 'rotate-key'], pluginEnv(hsm.modulePath, 'async'));
    assert.equal(rot.code, 0, rot.stderr);
    const rotated = rot.stdout.trim();
    await waitFor('Status to report the rotated key', async () => (await client.status()).keyId === rotated);
    const counts = await load.stop();
    assert.deepEqual(counts.failures, []);
    assert.equal(counts.plaintextInCiphertext, 0);
    const seed = randomBytes(32);
    const w = await client.encrypt(seed);
    assert.equal(w.keyId, rotated);
    assert.ok(w.annotations[LOCAL_KEK_ANNOTATION]);
    assert.deepEqual(Buffer.from((await client.decrypt(w.ciphertext, w.keyId, 'v2', w.annotations)).plaintext), seed);
    assert.ok(plugin.logs.some((l) => l.event === 'pkcs11-key-rotated' && l['component'] === 'kms-plugin'), 'the thread\'s log line, written by the plugin\'s logger');
  } finally {
    client.close();
    assert.equal(await plugin.stop(), 0);
  }
});
