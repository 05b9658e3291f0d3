// The local backend serving: the key file's versions in memory (as KeyObjects), the newest one
// wrapping, any one unwrapping. refresh() re-reads the file when it was rewritten (device, inode,
// size or mtime changed) and swaps the whole set at once; a bad rewrite leaves the loaded keys in
// place and fails the refresh with the reason. A ciphertext naming a version not loaded yet makes
// it look at the file once more (another process may just have rotated). Retired versions
// (retirement.ts) are not loaded: a ciphertext naming one fails with KEY_RETIRED (gRPC
// FailedPrecondition) and an error that says how to restore it, and the first such call per
// version is logged (`retired-key-used`).
import { stat } from 'node:fs/promises';
import { AesGcm } from '../../crypto/aes-gcm.js';
import type { Logger } from '../../log.js';
import { BackendError, type KekBackend, type WrapResult, type WrappingVersion } from '../backend.js';
import { open as openCiphertext, seal, sealPrefix, versionRefOf } from './ciphertext.js';
import type { SealPrefix } from '../seal-prefix.js';
import { restoreKeyCommand } from '../restore-command.js';
import { keyIdOf, readKeyFile, type KeyFileContents, type KeyFileStamp } from './key-file.js';

/** The restore-key command line for a version of the key file at `path`. */
export function localRestoreCommand(path: string, keyId: string): string {
  return restoreKeyCommand('local', [['--key-file', path]], keyId);
}

interface LoadedVersion {
  version: number;
  id: string;
  keyId: string;
  /** Epoch ms from the key file's `created`; undefined when absent or not a date (no rotation-age sample then). */
  createdAt?: number;
  /** AES-256-GCM under this version's key (held as a KeyObject). */
  gcm: AesGcm;
  prefix: SealPrefix;
}

/** A retired version: no key material in memory, only what its error message says. */
interface RetiredVersion {
  version: number;
  keyId: string;
  retired: string;
  purgeAfter: string;
}

interface Loaded {
  byRef: Map<string, LoadedVersion>;
  retired: Map<string, RetiredVersion>;
  current: LoadedVersion;
  stamp: KeyFileStamp;
  /** key_ids of byRef. */
  usable: ReadonlySet<string>;
}

function refKey(version: number, id: string): string {
  return `${version}:${id}`;
}

function load(contents: KeyFileContents, stamp: KeyFileStamp): Loaded {
  const byRef = new Map<string, LoadedVersion>();
  const retired = new Map<string, RetiredVersion>();
  let current: LoadedVersion | undefined;
  for (const v of contents.versions) {
    const keyId = keyIdOf(v);
    if (v.retired !== undefined) {
      v.key.fill(0);
      retired.set(refKey(v.version, v.id), { version: v.version, keyId, retired: v.retired, purgeAfter: v.purgeAfter ?? '' });
      continue;
    }
    const created = Date.parse(v.created);
    const loaded: LoadedVersion = {
      version: v.version, id: v.id, keyId, ...(Number.isFinite(created) ? { createdAt: created } : {}), gcm: new AesGcm(v.key), prefix: sealPrefix(v, keyId),
    };
    v.key.fill(0);
    byRef.set(refKey(v.version, v.id), loaded);
    if (!current || loaded.version > current.version) current = loaded;
  }
  if (!current) throw new BackendError('CONFIG', 'key file has no versions');
  return { byRef, retired, current, stamp, usable: new Set([...byRef.values()].map((v) => v.keyId)) };
}

export class LocalKek implements KekBackend {
  readonly kind = 'local';
  private state: Loaded | undefined;
  private refreshing: Promise<void> | undefined;
  /** Retired versions a ciphertext asked for (logged once each). */
  private readonly retiredAsked = new Set<string>();
  private readonly closers: Array<() => void> = [];

  private constructor(readonly path: string, private readonly log: Logger, state: Loaded) {
    this.state = state;
  }

  static async open(path: string, log: Logger): Promise<LocalKek> {
    const { contents, stamp } = await readKeyFile(path);
    const kek = new LocalKek(path, log, load(contents, stamp));
    log.info({ event: 'key-file-loaded', keyFile: path, versions: contents.versions.length, currentVersion: kek.loaded().current.version }, 'local KEK loaded');
    kek.warnUndated(kek.loaded().current);
    return kek;
  }

  private loaded(): Loaded {
    if (!this.state) throw new BackendError('UNAVAILABLE', `the local backend for ${this.path} is closed`);
    return this.state;
  }

  async currentKeyId(): Promise<string> {
    return this.loaded().current.keyId;
  }

  async currentKeyCreatedAt(): Promise<number | undefined> {
    return this.loaded().current.createdAt;
  }

  /** Says why the rotation-age metric has no sample: the current version's `created` is missing or not a date. */
  private warnUndated(current: LoadedVersion): void {
    if (current.createdAt !== undefined) return;
    this.log.warn({ event: 'key-created-unknown', keyFile: this.path, currentVersion: current.version },
      'the current key version has no valid "created" (RFC 3339) in the key file: its creation time, and the rotation-age metric, are not reported');
  }

  async encrypt(plaintext: Uint8Array): Promise<WrapResult> {
    const { current } = this.loaded();
    return { ciphertext: seal(current.prefix, current.gcm, plaintext), keyId: current.keyId };
  }

  async decrypt(ciphertext: Uint8Array): Promise<Buffer> {
    const ref = versionRefOf(ciphertext);
    let entry = this.loaded().byRef.get(refKey(ref.version, ref.id));
    if (!entry) {
      await this.refresh().catch(() => undefined);
      entry = this.loaded().byRef.get(refKey(ref.version, ref.id));
    }
    if (!entry) {
      const retired = this.loaded().retired.get(refKey(ref.version, ref.id));
      if (retired) throw this.retiredError(retired);
      throw new BackendError('INVALID_CIPHERTEXT', `ciphertext names key version ${ref.version} (id ${ref.id}), which key file ${this.path} does not hold`);
    }
    return openCiphertext(entry.prefix, entry.keyId, entry.gcm, ciphertext);
  }

  /** The versions loaded (not retired). */
  usableKeyIds(): ReadonlySet<string> {
    return this.loaded().usable;
  }

  wrappedBy(ciphertext: Uint8Array): WrappingVersion | undefined {
    let ref;
    try {
      ref = versionRefOf(ciphertext);
    } catch {
      return undefined; // not one of ours: decrypt says why
    }
    const { byRef, retired } = this.loaded();
    const loaded = byRef.get(refKey(ref.version, ref.id));
    if (loaded) return { keyId: loaded.keyId };
    const gone = retired.get(refKey(ref.version, ref.id));
    return gone ? { keyId: gone.keyId, refusal: this.retiredError(gone) } : undefined;
  }

  /**
   * Something still needs a retired version: say so loudly, and how to bring it back. KEY_RETIRED
   * even once the grace period is over: the key material stays in the file until its next rewrite,
   * so the value is not lost yet — but restore-key refuses then, and the message says so.
   */
  private retiredError(v: RetiredVersion): BackendError {
    if (!this.retiredAsked.has(v.keyId)) {
      this.retiredAsked.add(v.keyId);
      this.log.warn({ event: 'retired-key-used', keyFile: this.path, version: v.version, keyId: v.keyId, retired: v.retired, purgeAfter: v.purgeAfter },
        'a ciphertext needs a retired key version: restore it with `atrest kms-plugin restore-key` before its grace period ends');
    }
    const what = `ciphertext needs key version ${v.version} (key_id ${v.keyId}), retired at ${v.retired}`;
    const purge = Date.parse(v.purgeAfter);
    if (Number.isFinite(purge) && purge <= Date.now()) {
      return new BackendError('KEY_RETIRED',
        `${what}: its grace period ended at ${v.purgeAfter}, so restore-key no longer restores it and the next rewrite of key file ${this.path} (a rotation, a retirement) drops it for good; ` +
        'until then the file still holds it: copy the file now (in a copy with that version\'s "retired" and "purgeAfter" removed, it unwraps again)');
    }
    return new BackendError('KEY_RETIRED', `${what}: restore it with \`${localRestoreCommand(this.path, v.keyId)}\` (possible until ${v.purgeAfter})`);
  }

  /** Runs `close` when the backend closes (the rotation schedule's timer). */
  onClose(close: () => void): void {
    this.closers.push(close);
  }

  refresh(): Promise<void> {
    this.refreshing ??= this.reload().finally(() => { this.refreshing = undefined; });
    return this.refreshing;
  }

  private async reload(): Promise<void> {
    const before = this.loaded();
    let info;
    try {
      info = await stat(this.path);
    } catch (err) {
      throw new BackendError('CONFIG', `key file ${this.path}: cannot be read any more (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); serving with the versions loaded`, { cause: err });
    }
    const s = before.stamp;
    if (info.dev === s.dev && info.ino === s.ino && info.size === s.size && info.mtimeMs === s.mtimeMs) return;
    const { contents, stamp } = await readKeyFile(this.path);
    if (stamp.sha256 === s.sha256) {
      before.stamp = stamp;
      for (const v of contents.versions) v.key.fill(0);
      return;
    }
    const next = load(contents, stamp);
    const gone = [...before.byRef.values()].filter((v) => !next.byRef.has(refKey(v.version, v.id)));
    const retired = gone.filter((v) => next.retired.has(refKey(v.version, v.id)));
    const dropped = gone.filter((v) => !next.retired.has(refKey(v.version, v.id)));
    if (this.state) this.state = next;
    for (const v of next.byRef.values()) this.retiredAsked.delete(v.keyId);
    if (retired.length > 0) {
      this.log.info({ event: 'key-versions-retired', keyFile: this.path, versions: retired.map((v) => v.version) }, 'key versions retired: they no longer unwrap');
    }
    if (dropped.length > 0) {
      this.log.warn({ event: 'key-versions-removed', keyFile: this.path, versions: dropped.map((v) => v.version) },
        'key file no longer holds some versions: ciphertexts wrapped by them cannot be decrypted');
    }
    this.log.info({ event: 'key-file-reloaded', keyFile: this.path, versions: next.byRef.size, currentVersion: next.current.version }, 'local key file reloaded');
    this.warnUndated(next.current);
  }

  async close(): Promise<void> {
    for (const close of this.closers.splice(0)) close();
    this.state = undefined;
  }
}
