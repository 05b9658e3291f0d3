// The key versions a kmip backend knows (unique identifier → version and KMIP State) and which of
// them may unwrap: only Active objects do (PyKMIP refuses Encrypt and Decrypt with any other state,
// measured). refresh() re-reads the State of every version still believed Active — one Get
// Attributes each, usually the current version and at most one older one, since `atrest rotate`
// retires the rest — so a revocation made by another process (retirement.ts) is seen by a running
// plugin. States other than Active never come back to it (Deactivated, Compromised and Destroyed
// are final in KMIP; a Pre-Active version was never activated, so it wrapped nothing), so they are
// not read again. A refresh that fails changes nothing.
import { BackendError, type WrappingVersion } from '../backend.js';
import type { KmipClient } from './client.js';
import { KmipError } from './errors.js';
import { ResultReason, STATE_NAMES, State } from './tags.js';
import { parseWrapped } from './wrapped.js';

export const versionName = (keyName: string, version: number): string => `${keyName}/v${version}`;

export function keyIdOf(keyName: string, v: { uid: string; version: number }): string {
  return `kmip:${versionName(keyName, v.version)}:${v.uid}`;
}

/** How errors name one version: `KMIP key <name>/v<n> (unique identifier <uid>)`. */
export function versionLabel(keyName: string, uid: string, version: number): string {
  return `KMIP key ${versionName(keyName, version)} (unique identifier ${uid})`;
}

/**
 * States whose key material is still on the KMIP server although the server refuses to use it:
 * Deactivated (what `atrest rotate` retires to, Revoke with reason Superseded) and Compromised.
 * KMIP 1.4 §3.22 lets such a key "process cryptographically-protected information" (decrypt,
 * unwrap) only "under extraordinary circumstances and when special permission is granted" — a
 * decision of the server and its administrator (PyKMIP never grants it). So a value under one is not
 * lost: it is answered KEY_RETIRED (gRPC FailedPrecondition), reported apart from undecryptable
 * values, with the honest remedy. Destroyed states are KEY_NOT_FOUND: the key material is gone.
 */
const RETIRED_STATES: ReadonlySet<number> = new Set([State.Deactivated, State.Compromised]);

/**
 * What using a version that is not Active is answered (`detail`: the server's own message, if it was
 * asked). `keyId` names the version as the plugin's key_id.
 */
export function notActiveError(label: string, keyId: string, state: number, detail?: { message: string; cause: unknown }): BackendError {
  const stateName = STATE_NAMES[state] ?? `in state ${state}`;
  const text = RETIRED_STATES.has(state)
    ? `${label} (key_id ${keyId}) is ${stateName} (retired or revoked) and cannot be used: atrest cannot restore it (KMIP has no way back from ${stateName}), ` +
      'but its key material is still on the KMIP server, which may let it decrypt with special permission: ask the server\'s administrator; the values are not lost while the key exists'
    : `${label} is ${stateName} (revoked?) and cannot be used`;
  const code = RETIRED_STATES.has(state) ? 'KEY_RETIRED' : 'KEY_NOT_FOUND';
  return detail ? new BackendError(code, `${text}: ${detail.message}`, { cause: detail.cause }) : new BackendError(code, text);
}

interface Known {
  version: number;
  /** undefined: the server did not say (treated as usable until it does). */
  state: number | undefined;
}

export class KmipVersionStates {
  private known = new Map<string, Known>();
  private usable: ReadonlySet<string> = new Set();

  constructor(private readonly keyName: string, versions: Iterable<{ uid: string; version: number; state: number | undefined }>) {
    for (const v of versions) this.known.set(v.uid, { version: v.version, state: v.state });
    this.recount();
  }

  versionOf(uid: string): number | undefined {
    return this.known.get(uid)?.version;
  }

  /** Records a version (found by refresh, or named by a ciphertext and confirmed ours). */
  learn(uid: string, version: number, state: number | undefined): void {
    this.known.set(uid, { version, state });
    this.recount();
  }

  /** key_ids of the versions that may unwrap. */
  usableKeyIds(): ReadonlySet<string> {
    return this.usable;
  }

  /** KekBackend.wrappedBy: the version a kmip ciphertext names, if known. */
  wrappedBy(ciphertext: Uint8Array): WrappingVersion | undefined {
    const parsed = parseWrapped(ciphertext);
    if ('error' in parsed) return undefined;
    const { uid } = parsed.wrapped;
    const k = this.known.get(uid);
    if (!k) return undefined;
    const keyId = keyIdOf(this.keyName, { uid, version: k.version });
    return mayUnwrap(k) ? { keyId } : { keyId, refusal: notActiveError(versionLabel(this.keyName, uid, k.version), keyId, k.state!) };
  }

  /**
   * Re-reads the State of each version believed Active. All or nothing: any failure (an outage)
   * throws and leaves the known states as they were. A version the server no longer has is forgotten
   * (a ciphertext naming it goes to the server, which says so).
   */
  async reload(client: KmipClient): Promise<void> {
    const next = new Map(this.known);
    for (const [uid, k] of this.known) {
      if (!mayUnwrap(k)) continue;
      try {
        const { state } = await client.describe(uid);
        if (state !== undefined) next.set(uid, { version: k.version, state });
      } catch (e) {
        if (e instanceof KmipError && e.code === 'KMIP_RESULT' && e.resultReason === ResultReason.ItemNotFound) next.delete(uid);
        else throw e;
      }
    }
    this.known = next;
    this.recount();
  }

  private recount(): void {
    this.usable = new Set([...this.known].filter(([, k]) => mayUnwrap(k)).map(([uid, k]) => keyIdOf(this.keyName, { uid, version: k.version })));
  }
}

function mayUnwrap(k: Known): boolean {
  return k.state === undefined || k.state === State.Active;
}
