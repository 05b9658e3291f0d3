// The worker thread of `--pkcs11-call-mode thread` (see thread-host.ts): opens the pkcs11 backend
// here, with every PKCS#11 call synchronous, and runs the host's requests one at a time. Its log
// lines go to the host, which writes them through the plugin's logger. A module call that hangs
// blocks this thread only.
import { parentPort, workerData } from 'node:worker_threads';
import pino from 'pino';
import { AtrestError } from '../../errors.js';
import { processPkcs11Loader } from './library.js';
import { Pkcs11Kek } from './kek.js';
import type { ThreadInit, ThreadKeyState, ThreadMessage, ThreadRequest } from './thread-host.js';

const port = parentPort;
if (!port) throw new Error('thread-worker.ts runs only as the pkcs11 backend thread');
const { config } = workerData as ThreadInit;
const send = (m: ThreadMessage): void => port.postMessage(m);
const log = pino({ level: 'trace', base: null }, { write: (line: string) => send({ t: 'log', line }) });

/**
 * The host turns this into a BackendError whose text reaches clients and logs: the text of an error
 * not of ours is not vetted for secrets, so such an error is named by its type only (as toCallError
 * and the hierarchy's asOutage do).
 */
function failure(id: number, err: unknown): ThreadMessage {
  if (err instanceof AtrestError) return { t: 'reply', id, ok: false, error: { code: err.code, message: err.message } };
  return { t: 'reply', id, ok: false, error: { code: 'INTERNAL', message: `internal error in the pkcs11 backend thread: ${err instanceof Error ? err.name : 'non-error thrown'}` } };
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
            let w;
            try {
              w = await kek.encrypt(r.data);
            } finally {
              r.data.fill(0); // the plaintext: wiped whether or not it was sealed
            }
            // Copied: cloning a Buffer would carry the whole pooled ArrayBuffer under it.
            send({ t: 'reply', id: r.id, ok: true, data: new Uint8Array(w.ciphertext), keyId: w.keyId, key: await keyState(kek) });
            break;
          }
          case 'decrypt': {
            const plain = await kek.decrypt(r.data);
            // These bytes alone, in an ArrayBuffer of their own that is transferred to the host (not
            // cloned: no copy stays here); the host's caller wipes them there.
            const out = new Uint8Array(plain);
            plain.fill(0);
            try {
              port!.postMessage({ t: 'reply', id: r.id, ok: true, data: out, key: await keyState(kek) } satisfies ThreadMessage, [out.buffer]);
            } finally {
              out.fill(0); // detached (empty) once transferred; else the copy that did not travel
            }
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
