// init-key and rotate-key for the pkcs11 backend: create a new KEK version (a new key object)
// inside the token through a short-lived read-write session.
import type { Logger } from '../../log.js';
import { BackendError } from '../backend.js';
import { backendErrorFrom, isConnectionLost } from './ckr.js';
import type { Pkcs11Config } from './config.js';
import { chooseMechanism, usageOf } from './kek.js';
import { generateKeyVersion, keyIdOf, listKeyVersions } from './key-objects.js';
import type { Pkcs11Library } from './library.js';
import { closeSessions, openTokenSessions } from './token.js';

export type KeyVersionAction = 'init' | 'rotate';

/**
 * `init` creates version 1 and refuses when any version exists; `rotate` adds the next version
 * (refusing when there is none yet). Returns the key_id of the new version. Does not release `lib`.
 */
export function createKeyVersion(lib: Pkcs11Library, config: Pkcs11Config, action: KeyVersionAction, log: Logger): string {
  const { tokenLabel, keyLabel } = config;
  const opened = openTokenSessions(lib, tokenLabel, config.pin, 1, true);
  const session = opened.sessions[0];
  try {
    if (session === undefined) throw new BackendError('INTERNAL', 'no session was opened');
    const mechanism = chooseMechanism(lib, opened.mechanisms, config.mechanism, tokenLabel);
    const existing = listKeyVersions(lib, session, tokenLabel, keyLabel);
    const where = `label ${JSON.stringify(keyLabel)} in token ${JSON.stringify(tokenLabel)}`;
    if (action === 'init' && existing.length > 0) {
      throw new BackendError('CONFIG', `init-key: a key with ${where} exists already (${existing.length} version(s), current ${existing.at(-1)?.keyId}); use rotate-key to add a version`);
    }
    const latest = existing.at(-1);
    if (action === 'rotate' && !latest) {
      throw new BackendError('KEY_NOT_FOUND', `rotate-key: no key with ${where}; create it with init-key first`);
    }
    const version = (latest?.version ?? 0) + 1;
    let id: Buffer;
    try {
      id = generateKeyVersion(lib, session, keyLabel, version, usageOf(mechanism));
    } catch (err) {
      throw backendErrorFrom(isConnectionLost(err) ? 'UNAVAILABLE' : 'INTERNAL', `${action === 'init' ? 'init-key' : 'rotate-key'}: cannot create the key object with ${where}`, err);
    }
    const keyId = keyIdOf(tokenLabel, keyLabel, id.toString('hex'));
    log.info({ event: action === 'init' ? 'pkcs11-key-created' : 'pkcs11-key-rotated', backend: 'pkcs11', token: tokenLabel, keyLabel, keyId, version, previousKeyId: latest?.keyId }, action === 'init' ? 'pkcs11 key created' : 'pkcs11 key rotated');
    return keyId;
  } catch (err) {
    if (err instanceof BackendError) throw err;
    throw backendErrorFrom(isConnectionLost(err) ? 'UNAVAILABLE' : 'INTERNAL', `token ${JSON.stringify(tokenLabel)}`, err);
  } finally {
    closeSessions(lib, opened.sessions);
  }
}
