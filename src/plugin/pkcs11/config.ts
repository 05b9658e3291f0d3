// Flags of `--backend pkcs11` and turning them (commander's camelCase option values) into a
// checked configuration. The PIN only ever comes from a file that only its owner can read.
import { open } from 'node:fs/promises';
import type { BackendFlag, BackendOptions } from '../backend.js';
import { BackendError } from '../backend.js';

export type MechanismChoice = 'auto' | 'aes-gcm' | 'aes-kwp';
/**
 * `async`: the encrypt/decrypt/wrap/unwrap call itself runs on a libuv worker thread, which lets
 * several sessions work in parallel; the short calls around it (C_EncryptInit, C_FindObjects,
 * C_GetAttributeValue, C_OpenSession, C_Login) still run on the event loop. `sync`: every call on
 * the event loop; several times the calls/s with an in-host module like SoftHSM. In both, a module
 * call that hangs (a networked HSM that stopped answering: its client library blocks, as
 * p11-kit-client does on a frozen p11-kit server) stalls the whole plugin. `thread`: the whole
 * backend runs on a worker thread of its own (src/plugin/pkcs11/thread-host.ts), calls one at a
 * time; a hung module call blocks only that thread, and the key hierarchy keeps serving.
 */
export type CallMode = 'async' | 'sync' | 'thread';

export interface Pkcs11Config {
  /** Path of the PKCS#11 module (.so). */
  modulePath: string;
  /** Label of the token (CK_TOKEN_INFO.label; its trailing blanks are ignored). */
  tokenLabel: string;
  /** CKA_LABEL of the KEK objects; each version is one object with this label and its own CKA_ID. */
  keyLabel: string;
  /** User PIN (never logged, never put in errors). */
  pin: string;
  /** Path of the PIN file it was read from (named in restore-key advice; the path is not a secret). */
  pinFile?: string;
  /** Which wrapping mechanism new ciphertexts and new key objects use. */
  mechanism: MechanismChoice;
  /** Sessions opened for serving (parallel HSM calls). */
  sessions: number;
  callMode: CallMode;
}

export const pkcs11Flags: BackendFlag[] = [
  { flags: '--pkcs11-module <path>', description: 'PKCS#11 module (.so) of the HSM, e.g. /usr/lib/softhsm/libsofthsm2.so', env: 'ATREST_PKCS11_MODULE' },
  { flags: '--pkcs11-token-label <label>', description: 'label of the token that holds the key-encryption key', env: 'ATREST_PKCS11_TOKEN_LABEL' },
  { flags: '--pkcs11-pin-file <path>', description: 'file holding the token user PIN (mode 0600 or stricter)', env: 'ATREST_PKCS11_PIN_FILE' },
  { flags: '--pkcs11-key-label <label>', description: 'CKA_LABEL of the key-encryption key objects (one per version)', env: 'ATREST_PKCS11_KEY_LABEL' },
  {
    flags: '--pkcs11-mechanism <name>',
    description: 'wrapping mechanism: auto (AES-GCM, else AES key wrap with padding), aes-gcm or aes-kwp',
    env: 'ATREST_PKCS11_MECHANISM',
    defaultValue: 'auto',
  },
  { flags: '--pkcs11-sessions <n>', description: 'PKCS#11 sessions used in parallel for serving', env: 'ATREST_PKCS11_SESSIONS', defaultValue: '4' },
  {
    flags: '--pkcs11-call-mode <mode>',
    description: 'thread (the backend on a worker thread of its own: a networked HSM that hangs cannot block the plugin; use it for any HSM reached over a network), async (the encrypt/decrypt calls on libuv threads, the short calls around them on the event loop) or sync (all on the event loop; fastest with in-host modules such as SoftHSM)',
    env: 'ATREST_PKCS11_CALL_MODE',
    defaultValue: 'async',
  },
];

/** The commander option key of a flag: `--pkcs11-pin-file <path>` → `pkcs11PinFile`. */
export function optionKey(flags: string): string {
  const long = /--([a-z0-9-]+)/.exec(flags)?.[1] ?? flags;
  return long.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

const MAX_TOKEN_LABEL_BYTES = 32; // CK_TOKEN_INFO.label is 32 bytes, blank padded
const MAX_KEY_LABEL_BYTES = 256; // keeps key_id far below the 1024-byte KMS v2 limit
const MAX_PIN_FILE_BYTES = 4096;

function required(options: BackendOptions, flag: string): string {
  const value = options[optionKey(flag)];
  if (value === undefined || value === '') {
    throw new BackendError('CONFIG', `${flag} is required for --backend pkcs11`);
  }
  return value;
}

function label(options: BackendOptions, flag: string, maxBytes: number): string {
  const value = required(options, flag);
  if (Buffer.byteLength(value, 'utf8') > maxBytes) throw new BackendError('CONFIG', `${flag} is longer than ${maxBytes} bytes`);
  if ([...value].some((c) => c.charCodeAt(0) < 0x20 || c === '\x7f')) throw new BackendError('CONFIG', `${flag} contains control characters`);
  return value;
}

/** Reads and checks every pkcs11 flag, including the PIN file. */
export async function loadPkcs11Config(options: BackendOptions): Promise<Pkcs11Config> {
  const modulePath = required(options, '--pkcs11-module');
  const tokenLabel = label(options, '--pkcs11-token-label', MAX_TOKEN_LABEL_BYTES);
  if (tokenLabel !== tokenLabel.trimEnd()) throw new BackendError('CONFIG', '--pkcs11-token-label must not end in blanks');
  const keyLabel = label(options, '--pkcs11-key-label', MAX_KEY_LABEL_BYTES);
  const mechanism = options[optionKey('--pkcs11-mechanism')] ?? 'auto';
  if (mechanism !== 'auto' && mechanism !== 'aes-gcm' && mechanism !== 'aes-kwp') {
    throw new BackendError('CONFIG', `--pkcs11-mechanism must be auto, aes-gcm or aes-kwp, not ${JSON.stringify(mechanism)}`);
  }
  const sessionsText = options[optionKey('--pkcs11-sessions')] ?? '4';
  const sessions = Number(sessionsText);
  if (!Number.isInteger(sessions) || sessions < 1 || sessions > 64) {
    throw new BackendError('CONFIG', `--pkcs11-sessions must be an integer from 1 to 64, not ${JSON.stringify(sessionsText)}`);
  }
  const callMode = options[optionKey('--pkcs11-call-mode')] ?? 'async';
  if (callMode !== 'async' && callMode !== 'sync' && callMode !== 'thread') {
    throw new BackendError('CONFIG', `--pkcs11-call-mode must be thread, async or sync, not ${JSON.stringify(callMode)}`);
  }
  const pinFile = required(options, '--pkcs11-pin-file');
  const pin = await readPinFile(pinFile);
  return { modulePath, tokenLabel, keyLabel, pin, pinFile, mechanism, sessions, callMode };
}

/**
 * Reads the user PIN. Refuses a file that is not a regular file or that its group or others may
 * read or write (checked on the open descriptor, so the file cannot be swapped after the check).
 * One trailing newline is dropped; the PIN itself is never echoed in errors.
 */
export async function readPinFile(path: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw new BackendError('CONFIG', `--pkcs11-pin-file ${path}: cannot open (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new BackendError('CONFIG', `--pkcs11-pin-file ${path}: not a regular file`);
    const mode = info.mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new BackendError(
        'CONFIG',
        `--pkcs11-pin-file ${path}: mode ${mode.toString(8).padStart(4, '0')} lets group or others access the PIN; chmod 600 it`,
      );
    }
    if (info.size > MAX_PIN_FILE_BYTES) throw new BackendError('CONFIG', `--pkcs11-pin-file ${path}: larger than ${MAX_PIN_FILE_BYTES} bytes`);
    const text = (await handle.readFile({ encoding: 'utf8' })).replace(/\r?\n$/, '');
    if (text === '') throw new BackendError('CONFIG', `--pkcs11-pin-file ${path}: the file is empty`);
    if (/[\r\n]/.test(text)) throw new BackendError('CONFIG', `--pkcs11-pin-file ${path}: the PIN must be a single line`);
    return text;
  } finally {
    await handle.close();
  }
}
