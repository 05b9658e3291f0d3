// Retired remote KEK versions in a running key hierarchy. A local KEK held in memory would otherwise
// go on opening values after the remote version that wrapped it was retired (`atrest rotate`, in any
// process), until the plugin restarts. So after each successful refresh of the remote backend (the
// server's --refresh-interval) the hierarchy asks it which versions may unwrap — what that refresh
// already loaded (pkcs11: CKA_DECRYPT/CKA_UNWRAP; kmip: Active), no extra call here — and:
//   - drops cached local KEKs wrapped by any other version (a later Decrypt misses);
//   - answers a miss whose wrapped local KEK (or a value from before the hierarchy) names a retired
//     version with the error the remote gives for it, from memory: no remote call, logged once per
//     version;
//   - marks the current local KEK refused when its version went (the caller stops it sealing).
// A restore shows up the same way: the version is usable again at the next refresh, the current
// local KEK's mark is cleared, and a miss unwraps through the remote as before. A refresh that fails
// (an outage: the remote cannot be asked) changes nothing, so an outage never becomes refusals; the
// state a running plugin acts on is at most one --refresh-interval old. Nor is a listing believed in
// which the remote's current version may not unwrap: no backend retires its current version, so that
// is a glitch (a token listing only public objects, a server answering oddly), not a retirement; a
// current remote key revoked by other means is found by the periodic verify unwrap (kek.ts).
import type { Logger } from '../../log.js';
import { keyIdHash } from '../metrics.js';
import { BackendError, type KekBackend, type WrappingVersion } from '../backend.js';
import type { LocalKekCache } from './cache.js';
import type { InMemoryKek } from './local-kek.js';

export interface RetirementDeps {
  endpoint: string;
  log: Logger;
  cache: LocalKekCache;
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

export class RemoteRetirements {
  /** What the remote said may unwrap at the last refresh; undefined when the backend cannot say. */
  private usable: ReadonlySet<string> | undefined;
  /** Versions seen leaving `usable` (to tell a restore from a new version). */
  private readonly gone = new Set<string>();
  /** Versions whose refusal of a Decrypt was logged. */
  private readonly refusedLogged = new Set<string>();
  private implausibleLogged = false;

  constructor(private readonly inner: KekBackend, private readonly deps: RetirementDeps) {
    this.usable = inner.usableKeyIds?.();
  }

  /**
   * The remote version that wrapped `wrapped` (a wrapped local KEK, or a value from before the
   * hierarchy) and, when it is retired, the refusal to answer; keyId '' when the backend cannot say.
   * No remote call.
   */
  versionOf(wrapped: Uint8Array): WrappingVersion {
    const v = this.inner.wrappedBy?.(wrapped);
    if (!v) return { keyId: '' };
    if (v.refusal && !this.refusedLogged.has(v.keyId)) {
      this.refusedLogged.add(v.keyId);
      this.deps.log.warn({ event: 'retired-remote-kek-used', remote: this.deps.endpoint, keyId: v.keyId, keyIdHash: keyIdHash(v.keyId), err: v.refusal.message },
        'a value needs a retired remote KEK version: Decrypt fails until the version is restored');
    }
    return v;
  }

  /**
   * Call after a successful refresh of the remote backend, with the key_id of its current version.
   * When the usable versions changed, drops cached local KEKs of versions no longer usable and
   * marks or unmarks `current`. Returns the refusal when `current` has just become unusable (the
   * caller stops it sealing).
   */
  update(current: InMemoryKek, remoteCurrentKeyId: string): BackendError | undefined {
    const next = this.inner.usableKeyIds?.();
    const before = this.usable;
    if (next === undefined || before === undefined || sameSet(before, next)) return undefined;
    if (!next.has(remoteCurrentKeyId)) {
      if (!this.implausibleLogged) {
        this.implausibleLogged = true;
        this.deps.log.warn({ event: 'remote-kek-versions-implausible', remote: this.deps.endpoint, currentKeyIdHash: keyIdHash(remoteCurrentKeyId), usableVersions: next.size },
          'the remote lists its current KEK version as unable to unwrap: not believed, serving with the versions known before');
      }
      return undefined;
    }
    this.implausibleLogged = false;
    this.usable = next;
    const unusable = (kek: InMemoryKek): boolean => kek.remoteKeyId !== '' && !next.has(kek.remoteKeyId);
    const dropped = new Map<string, number>();
    this.deps.cache.evictWhere((kek) => {
      if (!unusable(kek)) return false;
      dropped.set(kek.remoteKeyId, (dropped.get(kek.remoteKeyId) ?? 0) + 1);
      return true;
    });
    for (const keyId of before) {
      if (next.has(keyId)) continue;
      this.gone.add(keyId);
      this.deps.log.warn({ event: 'remote-kek-version-unusable', remote: this.deps.endpoint, keyId, keyIdHash: keyIdHash(keyId), droppedLocalKeks: dropped.get(keyId) ?? 0 },
        'a remote KEK version may no longer unwrap (retired): local KEKs it wrapped are dropped, and values under them fail to decrypt until it is restored');
    }
    for (const keyId of next) {
      if (!this.gone.delete(keyId)) continue;
      this.refusedLogged.delete(keyId);
      this.deps.log.info({ event: 'remote-kek-version-usable', remote: this.deps.endpoint, keyId, keyIdHash: keyIdHash(keyId) },
        'a remote KEK version unwraps again (restored): values under it decrypt again');
    }
    if (!unusable(current)) {
      current.refusal = undefined;
      return undefined;
    }
    if (current.refusal) return undefined;
    current.refusal = this.inner.wrappedBy?.(current.wrapped)?.refusal ?? refusedBy(current, this.deps.endpoint);
    return current.refusal;
  }
}

/** For a backend that lists a version as unusable without saying what decrypt answers (gone, not retired). */
function refusedBy(kek: InMemoryKek, endpoint: string): BackendError {
  return new BackendError('KEY_NOT_FOUND', `remote KEK version ${kek.remoteKeyId} (${endpoint}) may no longer unwrap (retired or gone): local KEK ${kek.fingerprint} is not used`);
}
