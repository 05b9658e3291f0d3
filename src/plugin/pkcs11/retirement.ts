// KEK version retirement for the pkcs11 backend. A retired version is a key object whose
// CKA_ENCRYPT, CKA_DECRYPT, CKA_WRAP and CKA_UNWRAP are all false: the token itself refuses to use
// it (CKR_KEY_FUNCTION_NOT_PERMITTED), and CKA_END_DATE records the day. PKCS#11 lets these
// attributes change after creation, and SoftHSM 2.6 does (measured): restore sets the usage back,
// granting what the current --pkcs11-mechanism needs (as init-key does). CKA_END_DATE is only a
// record (PKCS#11 does not enforce dates) and stays after a restore. The key object is never
// destroyed here: when to destroy it is the HSM owner's policy.
import type { Logger } from '../../log.js';
import { BackendError, type KeyVersionInfo } from '../backend.js';
import { backendErrorFrom, isConnectionLost } from './ckr.js';
import type { Pkcs11Config } from './config.js';
import { chooseMechanism, usageOf } from './kek.js';
import { ckDate, dateAttributeOf, listKeyVersions, startDateOf, type KeyVersion } from './key-objects.js';
import type { Handle, Pkcs11Library } from './library.js';
import { closeSessions, openTokenSessions } from './token.js';

/** A version as list-keys shows it; `retired` defaults to what the listing read (CKA_DECRYPT/CKA_UNWRAP). */
function info(lib: Pkcs11Library, session: Handle, v: KeyVersion, current: boolean, retired = !v.usable): KeyVersionInfo {
  const createdAt = v.createdAt ?? startDateOf(lib, session, v.handle);
  // CKA_END_DATE is read like CKA_START_DATE: a token that cannot return it reports none.
  const endDate = retired ? dateAttributeOf(lib, session, v.handle, lib.k.CKA_END_DATE) : undefined;
  return {
    keyId: v.keyId,
    version: v.version,
    state: retired ? 'retired' : current ? 'current' : 'active',
    ...(createdAt !== undefined ? { createdAt } : {}),
    ...(endDate !== undefined ? { retiredAt: endDate } : {}),
  };
}

type Action = 'list' | 'retire' | 'restore';

/** Opens a read-write session on the token, runs `fn` with the key versions, closes the session. */
function withVersions<T>(lib: Pkcs11Library, config: Pkcs11Config, action: Action, fn: (session: Handle, versions: KeyVersion[], mechanisms: Set<number>) => T): T {
  const { tokenLabel, keyLabel } = config;
  const opened = openTokenSessions(lib, tokenLabel, config.pin, 1, action !== 'list');
  const session = opened.sessions[0];
  try {
    if (session === undefined) throw new BackendError('INTERNAL', 'no session was opened');
    const versions = listKeyVersions(lib, session, tokenLabel, keyLabel);
    if (versions.length === 0) throw new BackendError('KEY_NOT_FOUND', `no key labelled ${JSON.stringify(keyLabel)} in token ${JSON.stringify(tokenLabel)}; create it with init-key first`);
    return fn(session, versions, opened.mechanisms);
  } catch (err) {
    if (err instanceof BackendError) throw err;
    throw backendErrorFrom(isConnectionLost(err) ? 'UNAVAILABLE' : 'INTERNAL', `${action === 'list' ? 'list-keys' : `${action}-key`}: token ${JSON.stringify(tokenLabel)}`, err);
  } finally {
    closeSessions(lib, opened.sessions);
  }
}

function find(config: Pkcs11Config, versions: KeyVersion[], keyId: string): KeyVersion {
  const found = versions.find((v) => v.keyId === keyId);
  if (!found) {
    throw new BackendError('KEY_NOT_FOUND', `no version with key_id ${JSON.stringify(keyId)} under label ${JSON.stringify(config.keyLabel)} in token ${JSON.stringify(config.tokenLabel)} (there are ${versions.map((v) => v.keyId).join(', ')})`);
  }
  return found;
}

/** Every version of the key, oldest first. */
export function listPkcs11Versions(lib: Pkcs11Library, config: Pkcs11Config): KeyVersionInfo[] {
  return withVersions(lib, config, 'list', (session, versions) => versions.map((v, i) => info(lib, session, v, i === versions.length - 1)));
}

/** Retires a version that is not the newest; an already retired one is left as it is. */
export function retirePkcs11Version(lib: Pkcs11Library, config: Pkcs11Config, keyId: string, log: Logger, now = new Date()): KeyVersionInfo {
  return withVersions(lib, config, 'retire', (session, versions) => {
    const target = find(config, versions, keyId);
    if (target === versions[versions.length - 1]) throw new BackendError('CONFIG', `key_id ${keyId} is the current version: it cannot be retired (rotate first)`);
    if (target.usable) {
      const { k } = lib;
      lib.api.C_SetAttributeValue(session, target.handle, [
        { type: k.CKA_DECRYPT, value: false },
        { type: k.CKA_UNWRAP, value: false },
        { type: k.CKA_ENCRYPT, value: false },
        { type: k.CKA_WRAP, value: false },
        { type: k.CKA_END_DATE, value: ckDate(now) },
      ]);
      log.info({ event: 'pkcs11-key-retired', backend: 'pkcs11', token: config.tokenLabel, keyLabel: config.keyLabel, keyId }, 'pkcs11 key version retired (CKA_DECRYPT and CKA_UNWRAP false)');
    }
    return info(lib, session, target, false, true);
  });
}

/** Lets a retired version decrypt again, with the usage the configured mechanism needs. */
export function restorePkcs11Version(lib: Pkcs11Library, config: Pkcs11Config, keyId: string, log: Logger): KeyVersionInfo {
  return withVersions(lib, config, 'restore', (session, versions, mechanisms) => {
    const target = find(config, versions, keyId);
    const current = target === versions[versions.length - 1];
    if (!target.usable) {
      const wrap = usageOf(chooseMechanism(lib, mechanisms, config.mechanism, config.tokenLabel)) === 'wrap';
      const { k } = lib;
      lib.api.C_SetAttributeValue(session, target.handle, [
        { type: k.CKA_DECRYPT, value: true },
        { type: k.CKA_ENCRYPT, value: true },
        { type: k.CKA_UNWRAP, value: wrap },
        { type: k.CKA_WRAP, value: wrap },
      ]);
      log.info({ event: 'pkcs11-key-restored', backend: 'pkcs11', token: config.tokenLabel, keyLabel: config.keyLabel, keyId }, 'pkcs11 key version restored');
    }
    return info(lib, session, target, current, false);
  });
}
