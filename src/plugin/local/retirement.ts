// KEK version retirement in the local key file: listing the versions with their state, retiring a
// version that is not current (it stays in the file, marked, for a grace period, and no longer
// unwraps), restoring it within that period. `atrest rotate` retires only after proving that no
// stored value needs the version; the grace period is for what it cannot see (an etcd backup
// restored later). A retired version does not unwrap, so anything that still needed it fails
// loudly while it can still be restored, instead of silently after the purge.
import { BackendError, type KeyVersionInfo } from '../backend.js';
import { keyIdOf, readKeyFile, updateKeyFile, type KekVersion, type KeyFileContents } from './key-file.js';

/** Retire and restore mean the same whoever rewrote the file first: made again on its new content. */
const CHANGE_ATTEMPTS = 3;

function toInfo(v: KekVersion, current: boolean): KeyVersionInfo {
  const created = Date.parse(v.created);
  return {
    keyId: keyIdOf(v),
    version: v.version,
    state: current ? 'current' : v.retired !== undefined ? 'retired' : 'active',
    ...(Number.isFinite(created) ? { createdAt: created } : {}),
    ...(v.retired !== undefined ? { retiredAt: Date.parse(v.retired) } : {}),
    ...(v.purgeAfter !== undefined ? { purgeAfter: Date.parse(v.purgeAfter) } : {}),
  };
}

function infos(contents: KeyFileContents): KeyVersionInfo[] {
  const newest = contents.versions[contents.versions.length - 1];
  return contents.versions.map((v) => toInfo(v, v === newest));
}

/** Every version in the key file, oldest first. */
export async function listKeyFileVersions(path: string): Promise<KeyVersionInfo[]> {
  const { contents } = await readKeyFile(path);
  for (const v of contents.versions) v.key.fill(0);
  return infos(contents);
}

function find(path: string, contents: KeyFileContents, keyId: string): KekVersion {
  const found = contents.versions.find((v) => keyIdOf(v) === keyId);
  if (!found) {
    throw new BackendError('KEY_NOT_FOUND', `key file ${path} holds no version with key_id ${JSON.stringify(keyId)} (it holds ${contents.versions.map((v) => keyIdOf(v)).join(', ')})`);
  }
  return found;
}

/**
 * Marks `keyId` retired with a grace period of `graceMs`; retiring a retired version changes
 * nothing. Refuses the current (highest) version.
 */
export async function retireKeyFileVersion(path: string, keyId: string, graceMs: number, now = Date.now()): Promise<KeyVersionInfo> {
  let result: KeyVersionInfo | undefined;
  await updateKeyFile(path, (contents) => {
    const target = find(path, contents, keyId);
    const newest = contents.versions[contents.versions.length - 1];
    if (target === newest) throw new BackendError('CONFIG', `key_id ${keyId} is the current version of key file ${path}: it cannot be retired (rotate first)`);
    if (target.retired !== undefined) {
      result = toInfo(target, false);
      return undefined;
    }
    const retired = { ...target, retired: new Date(now).toISOString(), purgeAfter: new Date(now + graceMs).toISOString() };
    result = toInfo(retired, false);
    return { versions: contents.versions.map((v) => (v === target ? retired : v)) };
  }, now, CHANGE_ATTEMPTS);
  return result as KeyVersionInfo;
}

/** Makes a retired version unwrap again, until its purgeAfter; restoring a version that is not retired changes nothing. */
export async function restoreKeyFileVersion(path: string, keyId: string, now = Date.now()): Promise<KeyVersionInfo> {
  let result: KeyVersionInfo | undefined;
  await updateKeyFile(path, (contents) => {
    const target = find(path, contents, keyId);
    const newest = contents.versions[contents.versions.length - 1];
    if (target.retired === undefined) {
      result = toInfo(target, target === newest);
      return undefined;
    }
    if (target.purgeAfter !== undefined && Date.parse(target.purgeAfter) <= now) {
      throw new BackendError('CONFIG', `key_id ${keyId} in key file ${path}: its grace period ended at ${target.purgeAfter}; it is dropped from the file on the next rewrite and cannot be restored`);
    }
    const restored: KekVersion = { version: target.version, id: target.id, created: target.created, key: target.key };
    result = toInfo(restored, false);
    return { versions: contents.versions.map((v) => (v === target ? restored : v)) };
  }, now, CHANGE_ATTEMPTS);
  return result as KeyVersionInfo;
}
