// Finding the token by label and opening logged-in sessions on it.
import { BackendError } from '../backend.js';
import { CKR, ckrOf, describePkcs11Error, isConnectionLost } from './ckr.js';
import type { Handle, Pkcs11Library } from './library.js';

export interface TokenSessions {
  slot: Handle;
  sessions: Handle[];
  /** Mechanisms (CKM_*) the token offers. */
  mechanisms: Set<number>;
}

/** The slot whose initialised token has `label` (CK_TOKEN_INFO.label without its blank padding). */
export function findTokenSlot(lib: Pkcs11Library, label: string): Handle {
  const { api, k } = lib;
  let slots: Handle[];
  try {
    slots = api.C_GetSlotList(true);
  } catch (err) {
    throw new BackendError('UNAVAILABLE', `PKCS#11 module ${lib.path}: cannot list slots (${describePkcs11Error(err)})`, { cause: err });
  }
  const matches: Handle[] = [];
  const seen: string[] = [];
  for (const slot of slots) {
    let info;
    try {
      info = api.C_GetTokenInfo(slot);
    } catch {
      continue; // a slot whose token vanished between the two calls
    }
    if ((info.flags & k.CKF_TOKEN_INITIALIZED) === 0) continue;
    const tokenLabel = info.label.replace(/[ \0]+$/, '');
    seen.push(JSON.stringify(tokenLabel));
    if (tokenLabel === label) matches.push(slot);
  }
  if (matches.length === 0) {
    // The client module of an HSM reached over a network (p11-kit-client with its server down)
    // lists no token while the HSM is unreachable.
    const present = seen.length > 0 ? `tokens present: ${seen.join(', ')}` : 'no initialised token is present: is the HSM reachable?';
    throw new BackendError('CONFIG', `--pkcs11-token-label: no token labelled ${JSON.stringify(label)} in PKCS#11 module ${lib.path} (${present})`);
  }
  if (matches.length > 1) {
    throw new BackendError('CONFIG', `--pkcs11-token-label: ${matches.length} tokens are labelled ${JSON.stringify(label)}; labels must be unique`);
  }
  return matches[0] as Handle;
}

/** Opens `count` sessions on the token and logs the user in (login state is shared by all of them). */
export function openTokenSessions(lib: Pkcs11Library, tokenLabel: string, pin: string, count: number, readWrite: boolean): TokenSessions {
  const { api, k } = lib;
  const slot = findTokenSlot(lib, tokenLabel);
  const flags = k.CKF_SERIAL_SESSION | (readWrite ? k.CKF_RW_SESSION : 0);
  const sessions: Handle[] = [];
  try {
    for (let i = 0; i < count; i++) sessions.push(api.C_OpenSession(slot, flags));
    login(lib, sessions[0] as Handle, tokenLabel, pin);
    return { slot, sessions, mechanisms: new Set(api.C_GetMechanismList(slot)) };
  } catch (err) {
    closeSessions(lib, sessions);
    if (err instanceof BackendError) throw err;
    const code = isConnectionLost(err) ? 'UNAVAILABLE' : 'INTERNAL';
    throw new BackendError(code, `token ${JSON.stringify(tokenLabel)}: cannot open a session (${describePkcs11Error(err)})`, { cause: err });
  }
}

function login(lib: Pkcs11Library, session: Handle, tokenLabel: string, pin: string): void {
  try {
    lib.api.C_Login(session, lib.k.CKU_USER, pin);
  } catch (err) {
    const code = ckrOf(err);
    // Another user of the module in this process logged in already; the login is per application.
    if (code === CKR.USER_ALREADY_LOGGED_IN) return;
    const where = `login to token ${JSON.stringify(tokenLabel)} failed`;
    switch (code) {
      case CKR.PIN_INCORRECT:
        throw new BackendError('CONFIG', `${where}: the PIN in --pkcs11-pin-file is incorrect (CKR_PIN_INCORRECT)`, { cause: err });
      case CKR.PIN_LOCKED:
        throw new BackendError('CONFIG', `${where}: the user PIN is locked (CKR_PIN_LOCKED)`, { cause: err });
      case CKR.PIN_EXPIRED:
        throw new BackendError('CONFIG', `${where}: the user PIN has expired (CKR_PIN_EXPIRED)`, { cause: err });
      case CKR.PIN_INVALID:
      case CKR.PIN_LEN_RANGE:
        throw new BackendError('CONFIG', `${where}: the PIN in --pkcs11-pin-file is not a valid PIN for this token (${describePkcs11Error(err)})`, { cause: err });
      default:
        throw new BackendError(isConnectionLost(err) ? 'UNAVAILABLE' : 'INTERNAL', `${where}: ${describePkcs11Error(err)}`, { cause: err });
    }
  }
}

/** Closes sessions, ignoring errors (the token may already be gone). */
export function closeSessions(lib: Pkcs11Library, sessions: readonly Handle[]): void {
  for (const session of sessions) {
    try {
      lib.api.C_CloseSession(session);
    } catch {
      // already closed or the device is gone
    }
  }
}
