// The KEK versions as key objects in the token: finding them, checking them, creating new ones.
// Every version is an AES-256 secret key with CKA_LABEL = the key label and
// CKA_ID = u32be(version) ‖ 8 random bytes. The random part keeps two concurrent rotate-key runs
// from producing the same CKA_ID; every process orders versions the same way (number, then id), so
// all agree on the current one.
import { randomBytes } from 'node:crypto';
import { BackendError } from '../backend.js';
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
 * sensitive, never extractable, usable for `usage`. Anything else under that label fails closed.
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
    ]);
    const [id, keyType, valueLen, sensitive, extractable] = attrs.map((a) => a.value);
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
    versions.push({ id: Buffer.from(id), idHex, version: id.readUInt32BE(0), handle, keyId: keyIdOf(tokenLabel, keyLabel, idHex) });
  }
  versions.sort((a, b) => a.version - b.version || (a.idHex < b.idHex ? -1 : a.idHex > b.idHex ? 1 : 0));
  return versions;
}

/** Generates a new version inside the token (needs a read-write, logged-in session). */
export function generateKeyVersion(lib: Pkcs11Library, session: Handle, keyLabel: string, version: number, usage: KeyUsage): Buffer {
  const { api, k } = lib;
  const id = newKeyVersionId(version);
  api.C_GenerateKey(session, { mechanism: k.CKM_AES_KEY_GEN }, [
    { type: k.CKA_CLASS, value: k.CKO_SECRET_KEY },
    { type: k.CKA_KEY_TYPE, value: k.CKK_AES },
    { type: k.CKA_VALUE_LEN, value: AES_256_BYTES },
    { type: k.CKA_LABEL, value: keyLabel },
    { type: k.CKA_ID, value: id },
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
