// The KEK versions as key objects in the token: finding them, checking them, creating new ones.
// Every version is an AES-256 secret key with CKA_LABEL = the key label and
// CKA_ID = u32be(version) ‖ 8 random bytes. The random part keeps two concurrent rotate-key runs
// from producing the same CKA_ID; every process orders versions the same way (number, then id), so
// all agree on the current one. init-key/rotate-key also set CKA_START_DATE to the UTC day of
// creation (a CK_DATE has day precision and no time zone): the only creation time PKCS#11 defines
// on a key object, read back for the rotation-age metric. Objects without it report none, and so
// do tokens that cannot return it: SoftHSM 2.6 stores the date of a private object in clear but
// decrypts it on read and fails with CKR_GENERAL_ERROR (softhsm/SoftHSMv2#655 and #804).
import { randomBytes } from 'node:crypto';
import { BackendError } from '../backend.js';
import { CKR, ckrOf } from './ckr.js';
import type { Handle, Pkcs11Library } from './library.js';

export const KEY_VERSION_ID_BYTES = 12;
const AES_256_BYTES = 32;

export interface KeyVersion {
  /** CKA_ID. */
  id: Buffer;
  /** Lower-case hex of `id` (map key and part of key_id). */
  idHex: string;
  version: number;
  handle: Handle;
  /** What the KMS v2 key_id says for this version. */
  keyId: string;
  /** CKA_START_DATE as epoch ms (midnight UTC), read for the newest version only; undefined when the object has none. */
  createdAt?: number;
  /** CKA_DECRYPT or CKA_UNWRAP is true: the version may unwrap (false: retired, retirement.ts). */
  usable: boolean;
}

/** A CK_DATE ("YYYYMMDD" in ASCII) for the UTC day of `at`. */
export function ckDate(at: Date): Buffer {
  return Buffer.from(at.toISOString().slice(0, 10).replaceAll('-', ''), 'ascii');
}

/**
 * Epoch ms of midnight UTC of a CK_DATE; undefined for an empty value (not set) and for anything
 * that is not a real calendar date (a module's blank or garbage value must not become a metric).
 */
export function parseCkDate(value: Buffer | undefined): number | undefined {
  if (value === undefined || value.length !== 8) return undefined;
  const text = value.toString('ascii');
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(text);
  if (!m) return undefined;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const t = Date.UTC(y, mo - 1, d);
  const back = new Date(t);
  if (y < 1970 || back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) return undefined;
  return t;
}

export type KeyUsage = 'encrypt' | 'wrap';

export function keyIdOf(tokenLabel: string, keyLabel: string, idHex: string): string {
  return `pkcs11:${tokenLabel}:${keyLabel}:${idHex}`;
}

export function newKeyVersionId(version: number): Buffer {
  const id = Buffer.alloc(KEY_VERSION_ID_BYTES);
  id.writeUInt32BE(version, 0);
  randomBytes(KEY_VERSION_ID_BYTES - 4).copy(id, 4);
  return id;
}

function bool(value: Buffer | undefined): boolean {
  return value !== undefined && value.length > 0 && value.some((b) => b !== 0);
}

function ulong(value: Buffer | undefined): number {
  if (value === undefined || value.length === 0) return -1;
  // CK_ULONG in the module's native byte order (little-endian on every platform Node supports here).
  return Number(value.length >= 8 ? value.readBigUInt64LE(0) : BigInt(value.readUIntLE(0, Math.min(value.length, 6))));
}

/**
 * Lists the key objects labelled `keyLabel` (oldest version first) and checks each one: AES-256,
 * sensitive, never extractable. Anything else under that label fails closed. Whether each may still
 * unwrap (retirement) is read in the same call.
 */
export function listKeyVersions(lib: Pkcs11Library, session: Handle, tokenLabel: string, keyLabel: string): KeyVersion[] {
  const { api, k } = lib;
  api.C_FindObjectsInit(session, [
    { type: k.CKA_CLASS, value: k.CKO_SECRET_KEY },
    { type: k.CKA_LABEL, value: keyLabel },
  ]);
  const handles: Handle[] = [];
  try {
    for (;;) {
      const batch = api.C_FindObjects(session, 64);
      if (batch.length === 0) break;
      handles.push(...batch);
    }
  } finally {
    api.C_FindObjectsFinal(session);
  }
  const versions: KeyVersion[] = [];
  const seen = new Set<string>();
  for (const handle of handles) {
    const attrs = api.C_GetAttributeValue(session, handle, [
      { type: k.CKA_ID },
      { type: k.CKA_KEY_TYPE },
      { type: k.CKA_VALUE_LEN },
      { type: k.CKA_SENSITIVE },
      { type: k.CKA_EXTRACTABLE },
      { type: k.CKA_DECRYPT },
      { type: k.CKA_UNWRAP },
    ]);
    const [id, keyType, valueLen, sensitive, extractable, decrypt, unwrap] = attrs.map((a) => a.value);
    const where = `key object labelled ${JSON.stringify(keyLabel)} in token ${JSON.stringify(tokenLabel)}`;
    if (id === undefined || id.length !== KEY_VERSION_ID_BYTES) {
      throw new BackendError('CONFIG', `${where} has a CKA_ID of ${id?.length ?? 0} bytes, not an atrest key version (${KEY_VERSION_ID_BYTES} bytes); give it another label`);
    }
    const idHex = id.toString('hex');
    const whereId = `${where} with CKA_ID ${idHex}`;
    if (ulong(keyType) !== k.CKK_AES || ulong(valueLen) !== AES_256_BYTES) {
      throw new BackendError('CONFIG', `${whereId} is not an AES-256 key`);
    }
    if (!bool(sensitive) || bool(extractable)) {
      throw new BackendError('CONFIG', `${whereId} is extractable or not sensitive; refusing to use a KEK that can leave the token`);
    }
    if (seen.has(idHex)) throw new BackendError('CONFIG', `${whereId} exists twice`);
    seen.add(idHex);
    versions.push({ id: Buffer.from(id), idHex, version: id.readUInt32BE(0), handle, keyId: keyIdOf(tokenLabel, keyLabel, idHex), usable: bool(decrypt) || bool(unwrap) });
  }
  versions.sort((a, b) => a.version - b.version || (a.idHex < b.idHex ? -1 : a.idHex > b.idHex ? 1 : 0));
  // Only the current (newest) version's creation time is reported: one extra call, not one per version.
  const current = versions.at(-1);
  if (current) {
    const createdAt = startDateOf(lib, session, current.handle);
    if (createdAt !== undefined) current.createdAt = createdAt;
  }
  return versions;
}

/** What reading CKA_START_DATE may fail with without the token being in trouble. */
const START_DATE_UNREADABLE = new Set<number>([CKR.GENERAL_ERROR, CKR.ATTRIBUTE_SENSITIVE, CKR.ATTRIBUTE_TYPE_INVALID]);

/**
 * CKA_START_DATE of an object as epoch ms, or undefined. Read on its own, so that a date the token
 * cannot return neither hides the other attributes nor fails the listing: pkcs11js throws a
 * TypeError for an empty CK_DATE (the default of objects created without one), SoftHSM a
 * CKR_GENERAL_ERROR for a date on a private object (see the top of this file).
 */
export function startDateOf(lib: Pkcs11Library, session: Handle, handle: Handle): number | undefined {
  return dateAttributeOf(lib, session, handle, lib.k.CKA_START_DATE);
}

/** A CK_DATE attribute (CKA_START_DATE, CKA_END_DATE) as epoch ms, or undefined, read as startDateOf does. */
export function dateAttributeOf(lib: Pkcs11Library, session: Handle, handle: Handle, type: number): number | undefined {
  try {
    return parseCkDate(lib.api.C_GetAttributeValue(session, handle, [{ type }])[0]?.value);
  } catch (err) {
    const ckr = ckrOf(err);
    if (err instanceof TypeError || (ckr !== undefined && START_DATE_UNREADABLE.has(ckr))) return undefined;
    throw err;
  }
}

/** Generates a new version inside the token (needs a read-write, logged-in session). */
export function generateKeyVersion(lib: Pkcs11Library, session: Handle, keyLabel: string, version: number, usage: KeyUsage, now: Date = new Date()): Buffer {
  const { api, k } = lib;
  const id = newKeyVersionId(version);
  api.C_GenerateKey(session, { mechanism: k.CKM_AES_KEY_GEN }, [
    { type: k.CKA_CLASS, value: k.CKO_SECRET_KEY },
    { type: k.CKA_KEY_TYPE, value: k.CKK_AES },
    { type: k.CKA_VALUE_LEN, value: AES_256_BYTES },
    { type: k.CKA_LABEL, value: keyLabel },
    { type: k.CKA_ID, value: id },
    // A Buffer is passed to the module as the raw 8-byte CK_DATE.
    { type: k.CKA_START_DATE, value: ckDate(now) },
    { type: k.CKA_TOKEN, value: true },
    { type: k.CKA_PRIVATE, value: true },
    { type: k.CKA_SENSITIVE, value: true },
    { type: k.CKA_EXTRACTABLE, value: false },
    { type: k.CKA_ENCRYPT, value: true },
    { type: k.CKA_DECRYPT, value: true },
    // Key wrap is only granted when it is how this token must wrap (no AES-GCM): least privilege.
    { type: k.CKA_WRAP, value: usage === 'wrap' },
    { type: k.CKA_UNWRAP, value: usage === 'wrap' },
    { type: k.CKA_SIGN, value: false },
    { type: k.CKA_VERIFY, value: false },
    { type: k.CKA_DERIVE, value: false },
  ]);
  return id;
}
