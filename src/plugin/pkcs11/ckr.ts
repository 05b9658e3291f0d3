// PKCS#11 return values (CKR_*) the backend reacts to, and how each maps onto a BackendError code.
// The numeric values are fixed by the PKCS#11 standard (pkcs11t.h), so this file needs no native
// module to be loaded and stays testable on its own.
import { BackendError, type BackendErrorCode } from '../backend.js';

export const CKR = {
  HOST_MEMORY: 0x02,
  SLOT_ID_INVALID: 0x03,
  GENERAL_ERROR: 0x05,
  FUNCTION_FAILED: 0x06,
  ARGUMENTS_BAD: 0x07,
  ATTRIBUTE_READ_ONLY: 0x10,
  ATTRIBUTE_SENSITIVE: 0x11,
  ATTRIBUTE_TYPE_INVALID: 0x12,
  ATTRIBUTE_VALUE_INVALID: 0x13,
  DATA_INVALID: 0x20,
  DATA_LEN_RANGE: 0x21,
  DEVICE_ERROR: 0x30,
  DEVICE_MEMORY: 0x31,
  DEVICE_REMOVED: 0x32,
  ENCRYPTED_DATA_INVALID: 0x40,
  ENCRYPTED_DATA_LEN_RANGE: 0x41,
  KEY_HANDLE_INVALID: 0x60,
  KEY_SIZE_RANGE: 0x62,
  KEY_TYPE_INCONSISTENT: 0x63,
  KEY_FUNCTION_NOT_PERMITTED: 0x68,
  FUNCTION_NOT_SUPPORTED: 0x54,
  MECHANISM_INVALID: 0x70,
  MECHANISM_PARAM_INVALID: 0x71,
  OBJECT_HANDLE_INVALID: 0x82,
  OPERATION_ACTIVE: 0x90,
  OPERATION_NOT_INITIALIZED: 0x91,
  PIN_INCORRECT: 0xa0,
  PIN_INVALID: 0xa1,
  PIN_LEN_RANGE: 0xa2,
  PIN_EXPIRED: 0xa3,
  PIN_LOCKED: 0xa4,
  SESSION_CLOSED: 0xb0,
  SESSION_COUNT: 0xb1,
  SESSION_HANDLE_INVALID: 0xb3,
  SESSION_READ_ONLY: 0xb5,
  TEMPLATE_INCOMPLETE: 0xd0,
  TEMPLATE_INCONSISTENT: 0xd1,
  TOKEN_NOT_PRESENT: 0xe0,
  TOKEN_NOT_RECOGNIZED: 0xe1,
  TOKEN_WRITE_PROTECTED: 0xe2,
  USER_ALREADY_LOGGED_IN: 0x100,
  USER_NOT_LOGGED_IN: 0x101,
  WRAPPED_KEY_INVALID: 0x110,
  WRAPPED_KEY_LEN_RANGE: 0x112,
  CANT_LOCK: 0x0a,
  BUFFER_TOO_SMALL: 0x150,
  CRYPTOKI_NOT_INITIALIZED: 0x190,
  CRYPTOKI_ALREADY_INITIALIZED: 0x191,
} as const;

const names = new Map<number, string>(Object.entries(CKR).map(([name, value]) => [value, `CKR_${name}`]));

/** The CKR code of an error thrown by pkcs11js (its Pkcs11Error has a numeric `code`), if any. */
export function ckrOf(err: unknown): number | undefined {
  if (err instanceof Error && typeof (err as { code?: unknown }).code === 'number') {
    return (err as unknown as { code: number }).code;
  }
  return undefined;
}

/** `CKR_PIN_INCORRECT`, or `CKR 0x1a2` for codes this file does not name. */
export function ckrName(code: number | undefined): string {
  if (code === undefined) return 'no CKR code';
  return names.get(code) ?? `CKR 0x${code.toString(16)}`;
}

/** A short description of a pkcs11js error for messages: its CKR name and the PKCS#11 function. */
export function describePkcs11Error(err: unknown): string {
  const code = ckrOf(err);
  const method = err instanceof Error ? (err as { method?: unknown }).method : undefined;
  const where = typeof method === 'string' && method !== '' ? ` in ${method}` : '';
  if (code !== undefined && code !== 0) return `${ckrName(code)}${where}`;
  return `${err instanceof Error ? err.message : String(err)}${where}`;
}

/**
 * The session or the token went away (HSM restarted, network HSM disconnected, token pulled, the
 * library lost its login): the backend drops its sessions, reconnects and retries once.
 */
const connectionLost = new Set<number>([
  CKR.DEVICE_ERROR,
  CKR.DEVICE_MEMORY,
  CKR.DEVICE_REMOVED,
  CKR.SESSION_CLOSED,
  CKR.SESSION_HANDLE_INVALID,
  CKR.TOKEN_NOT_PRESENT,
  CKR.TOKEN_NOT_RECOGNIZED,
  CKR.USER_NOT_LOGGED_IN,
  CKR.CRYPTOKI_NOT_INITIALIZED,
  // A failed call left an operation open on the session; the session is not reusable as is.
  CKR.OPERATION_ACTIVE,
]);

export function isConnectionLost(err: unknown): boolean {
  const code = ckrOf(err);
  return code !== undefined && connectionLost.has(code);
}

/** The key object behind a cached handle is gone (deleted, token re-initialised). */
export function isHandleInvalid(err: unknown): boolean {
  const code = ckrOf(err);
  return code === CKR.KEY_HANDLE_INVALID || code === CKR.OBJECT_HANDLE_INVALID;
}

/**
 * Codes a token returns when a ciphertext does not authenticate. SoftHSM reports a bad GCM tag or
 * a bad key-wrap integrity check as CKR_GENERAL_ERROR, so callers confirm the session still works
 * before blaming the ciphertext.
 */
const maybeBadCiphertext = new Set<number>([
  CKR.GENERAL_ERROR,
  CKR.FUNCTION_FAILED,
  CKR.ENCRYPTED_DATA_INVALID,
  CKR.ENCRYPTED_DATA_LEN_RANGE,
  CKR.WRAPPED_KEY_INVALID,
  CKR.WRAPPED_KEY_LEN_RANGE,
]);

export function mayBeBadCiphertext(err: unknown): boolean {
  const code = ckrOf(err);
  return code !== undefined && maybeBadCiphertext.has(code);
}

/** Wraps a pkcs11js error into a BackendError with `code`, keeping it as `cause`. */
export function backendErrorFrom(code: BackendErrorCode, what: string, err: unknown): BackendError {
  if (err instanceof BackendError) return err;
  return new BackendError(code, `${what}: ${describePkcs11Error(err)}`, { cause: err });
}
