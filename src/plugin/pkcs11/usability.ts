// Which pkcs11 key versions may unwrap, as the backend last listed them (CKA_DECRYPT/CKA_UNWRAP,
// read with the versions on every refresh: no extra call), and what a ciphertext under a retired one
// is answered: KEY_RETIRED (gRPC FailedPrecondition) with the restore-key command line. Shared by the
// backend on the event loop (kek.ts) and the host of the backend thread (thread-host.ts), which
// learns the list from the thread's replies: no key material, no handles.
import { BackendError, type WrappingVersion } from '../backend.js';
import { restoreKeyCommand } from '../restore-command.js';
import { parseCiphertext } from './ciphertext.js';
import type { Pkcs11Config } from './config.js';

/** Where the key lives, as restore-key needs it (the PIN file's path, never the PIN). */
export type Pkcs11KeyPlace = Pick<Pkcs11Config, 'modulePath' | 'tokenLabel' | 'keyLabel' | 'pinFile'>;

/** Only the place of a configuration: a copy kept for error messages holds no PIN. */
export function keyPlaceOf(config: Pkcs11KeyPlace): Pkcs11KeyPlace {
  return { modulePath: config.modulePath, tokenLabel: config.tokenLabel, keyLabel: config.keyLabel, ...(config.pinFile !== undefined ? { pinFile: config.pinFile } : {}) };
}

/** The restore-key command line for `keyId` of the key at `place`. */
export function pkcs11RestoreCommand(place: Pkcs11KeyPlace, keyId: string): string {
  return restoreKeyCommand('pkcs11', [
    ['--pkcs11-module', place.modulePath], ['--pkcs11-token-label', place.tokenLabel], ['--pkcs11-key-label', place.keyLabel],
    ['--pkcs11-pin-file', place.pinFile ?? '<PIN file>'],
  ], keyId);
}

/** One version's public facts. */
export interface VersionUsability {
  /** CKA_ID in lower-case hex (what a ciphertext names). */
  idHex: string;
  keyId: string;
  usable: boolean;
}

/**
 * What decrypt answers for a ciphertext under a retired version: the token's refusal, explained. The
 * key object is still in the token (atrest never destroys one), so the value is not lost.
 */
export function retiredVersionError(place: Pkcs11KeyPlace, keyId: string, cause?: unknown): BackendError {
  return new BackendError('KEY_RETIRED', `pkcs11 key version ${keyId} may not decrypt (retired?): restore it with \`${pkcs11RestoreCommand(place, keyId)}\``, cause === undefined ? undefined : { cause });
}

/** The versions by CKA_ID hex, and the set KekBackend.usableKeyIds reports. */
export class Pkcs11Usability {
  readonly usableKeyIds: ReadonlySet<string>;
  private readonly byIdHex: ReadonlyMap<string, VersionUsability>;

  constructor(versions: readonly VersionUsability[], private readonly place: Pkcs11KeyPlace) {
    this.byIdHex = new Map(versions.map((v) => [v.idHex, v]));
    this.usableKeyIds = new Set(versions.filter((v) => v.usable).map((v) => v.keyId));
  }

  get versions(): VersionUsability[] {
    return [...this.byIdHex.values()].map((v) => ({ ...v }));
  }

  /** KekBackend.wrappedBy: the version a pkcs11 ciphertext names, if listed. */
  wrappedBy(ciphertext: Uint8Array): WrappingVersion | undefined {
    let idHex: string;
    try {
      idHex = parseCiphertext(ciphertext).keyVersionId.toString('hex');
    } catch {
      return undefined; // not one of ours: decrypt says why
    }
    const v = this.byIdHex.get(idHex);
    if (!v) return undefined;
    return v.usable ? { keyId: v.keyId } : { keyId: v.keyId, refusal: retiredVersionError(this.place, v.keyId) };
  }
}
