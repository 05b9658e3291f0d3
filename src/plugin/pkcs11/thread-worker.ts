// The worker thread of `--pkcs11-call-mode thread` (see thread-host.ts): opens the pkcs11 backend
// here, with every PKCS#11 call synchronous, and runs the host's requests one at a time. Its log
// lines go to the host, which writes them through the plugin's logger. A module call that hangs
// blocks this thread only.
import { parentPort, workerData } from 'node:worker_threads';
import pino from 'pino';
import { AtrestError, messageOf } from '../../errors.js';
import { processPkcs11Loader } from './library.js';
import { Pkcs11Kek } from './kek.js';
import type { ThreadInit, ThreadKeyState, ThreadMessage, ThreadRequest } from './thread-host.js';

const port = parentPort;
if (!port) throw new Error('thread-worker.ts runs only as the pkcs11 backend thread');
const { config } = workerData as ThreadInit;
const send = (m: ThreadMessage): void => port.postMessage(m);
const log = pino({ level: 'trace', base: null }, { write: (line: string) => send({ t: 'log', line }) });

function failure(id: number, err: unknown): ThreadMessage {
  const code = err instanceof AtrestError ? err.code : 'INTERNAL';
  return { t: 'reply', id, ok: false, error: { code, message: messageOf(err) } };
}

/** The current version; after the open and a refresh also every version's usability (the host's wrappedBy). */
async function keyState(kek: Pkcs11Kek, withVersions = false): Promise<ThreadKeyState> {
  const state: ThreadKeyState = { keyId: await kek.currentKeyId(), createdAt: await kek.currentKeyCreatedAt() };
  if (withVersions) state.versions = kek.versionUsability;
  return state;
}

async function main(): Promise<void> {
  let kek: Pkcs11Kek;
  send({ t: 'ready' });
  try {
    const library = await processPkcs11Loader.acquire(config.modulePath);
    kek = await Pkcs11Kek.open({ config, library, log });
    send({ t: 'reply', id: 0, ok: true, key: await keyState(kek, true) });
  } catch (err) {
    send(failure(0, err));
    return;
  }
  port!.on('message', (r: ThreadRequest) => {
    void (async () => {
      try {
        switch (r.op) {
          case 'encrypt': {
            const w = await kek.encrypt(r.data);
            r.data.fill(0);
            // Copied: cloning a Buffer would carry the whole pooled ArrayBuffer under it.
            send({ t: 'reply', id: r.id, ok: true, data: new Uint8Array(w.ciphertext), keyId: w.keyId, key: await keyState(kek) });
            break;
          }
          case 'decrypt': {
            const plain = await kek.decrypt(r.data);
            // A copy travels to the host; this one is wiped.
            send({ t: 'reply', id: r.id, ok: true, data: new Uint8Array(plain), key: await keyState(kek) });
            plain.fill(0);
            break;
          }
          case 'refresh':
            await kek.refresh();
            send({ t: 'reply', id: r.id, ok: true, key: await keyState(kek, true) });
            break;
          case 'close':
            await kek.close();
            send({ t: 'reply', id: r.id, ok: true, key: await keyState(kek).catch(() => ({ keyId: '', createdAt: undefined })) });
            port!.close();
            break;
        }
      } catch (err) {
        send(failure(r.id, err));
      }
    })();
  });
}

void main();
