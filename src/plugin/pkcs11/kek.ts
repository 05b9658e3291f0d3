// The pkcs11 KekBackend: DEKs and seeds are wrapped inside the HSM by a non-extractable AES-256
// key object, with CKM_AES_GCM (preferred) or CKM_AES_KEY_WRAP_PAD through C_WrapKey when the token
// has no GCM. The key never leaves the token; this process only holds object handles.
import { randomFillSync } from 'node:crypto';
import type { GcmParams } from 'pkcs11js';
import type { Logger } from '../../log.js';
import { BackendError, type KekBackend, type WrapResult, type WrappingVersion } from '../backend.js';
import {
  GCM_IV_BYTES,
  GCM_TAG_BYTES,
  MECH_AES_GCM,
  MECH_AES_KWP,
  decodeKwpInner,
  encodeHeader,
  encodeKwpInner,
  maxPlaintextBytes,
  parseCiphertext,
  type WrapMechanism,
} from './ciphertext.js';
import { CKR, backendErrorFrom, ckrOf, describePkcs11Error, isConnectionLost, isHandleInvalid, mayBeBadCiphertext } from './ckr.js';
import type { MechanismChoice, Pkcs11Config } from './config.js';
import { listKeyVersions, type KeyUsage, type KeyVersion } from './key-objects.js';
import type { Handle, Pkcs11Library } from './library.js';
import { PoolClosedError, SessionPool } from './session-pool.js';
import { closeSessions, openTokenSessions } from './token.js';
import { keyPlaceOf, Pkcs11Usability, retiredVersionError, type VersionUsability } from './usability.js';

/** After a failed reconnect, calls fail fast for this long instead of hammering the HSM. */
const RECONNECT_BACKOFF_MS = 1000;

interface Connection {
  pool: SessionPool;
  mechanism: WrapMechanism;
}

export interface Pkcs11KekOptions {
  config: Pkcs11Config;
  library: Pkcs11Library;
  log: Logger;
}

/** Which mechanism a token with `mechanisms` uses under `choice`; fails naming the flag. */
export function chooseMechanism(lib: Pkcs11Library, mechanisms: Set<number>, choice: MechanismChoice, tokenLabel: string): WrapMechanism {
  const gcm = mechanisms.has(lib.k.CKM_AES_GCM);
  const kwp = mechanisms.has(lib.k.CKM_AES_KEY_WRAP_PAD);
  if (choice === 'aes-gcm' || (choice === 'auto' && gcm)) {
    if (!gcm) throw new BackendError('CONFIG', `--pkcs11-mechanism aes-gcm: token ${JSON.stringify(tokenLabel)} does not offer CKM_AES_GCM`);
    return MECH_AES_GCM;
  }
  if (!kwp) {
    // A PKCS#11 proxy lists only the mechanisms whose parameters it can forward: p11-kit 0.24's
    // client module (Debian 12) forwards neither of these two, so a token behind it lands here.
    throw new BackendError('CONFIG', `token ${JSON.stringify(tokenLabel)} offers neither CKM_AES_GCM nor CKM_AES_KEY_WRAP_PAD (--pkcs11-mechanism ${choice}); if the module is a proxy to the HSM (such as p11-kit-client.so before p11-kit 0.25), it does not forward them: load the HSM's own module instead`);
  }
  return MECH_AES_KWP;
}

export function usageOf(mechanism: WrapMechanism): KeyUsage {
  return mechanism === MECH_AES_GCM ? 'encrypt' : 'wrap';
}

export class Pkcs11Kek implements KekBackend {
  readonly kind = 'pkcs11';
  private readonly config: Pkcs11Config;
  private readonly lib: Pkcs11Library;
  private readonly log: Logger;
  /** Data operations on worker threads (config.callMode, see config.ts). */
  private readonly async: boolean;
  private versions = new Map<string, KeyVersion>();
  private usability: Pkcs11Usability;
  private current: KeyVersion | undefined;
  private connection: Connection | undefined;
  private lastConnectFailure: { at: number; error: BackendError } | undefined;
  private refreshing: Promise<void> | undefined;
  private closed = false;

  private constructor(options: Pkcs11KekOptions) {
    this.config = options.config;
    this.lib = options.library;
    this.log = options.log;
    this.async = options.config.callMode === 'async';
    this.usability = new Pkcs11Usability([], keyPlaceOf(options.config));
  }

  /**
   * Connects, logs in and loads the key versions. Fails (and releases the library) when the token,
   * the PIN or the key is wrong. The library reference is owned by the backend from here on.
   */
  static async open(options: Pkcs11KekOptions): Promise<Pkcs11Kek> {
    const kek = new Pkcs11Kek(options);
    try {
      await kek.refresh();
      if (!kek.current) {
        throw new BackendError(
          'KEY_NOT_FOUND',
          `--pkcs11-key-label: no key labelled ${JSON.stringify(options.config.keyLabel)} in token ${JSON.stringify(options.config.tokenLabel)}; create it with \`atrest kms-plugin init-key --backend pkcs11 ...\``,
        );
      }
    } catch (err) {
      await kek.close();
      throw err;
    }
    const conn = kek.connection;
    kek.log.info(
      {
        event: 'pkcs11-open',
        backend: 'pkcs11',
        module: options.library.path,
        token: options.config.tokenLabel,
        keyLabel: options.config.keyLabel,
        keyId: kek.current?.keyId,
        versions: kek.versions.size,
        mechanism: conn?.mechanism === MECH_AES_KWP ? 'CKM_AES_KEY_WRAP_PAD' : 'CKM_AES_GCM',
        sessions: conn?.pool.size,
        callMode: options.config.callMode,
      },
      'pkcs11 backend opened',
    );
    return kek;
  }

  async currentKeyId(): Promise<string> {
    return this.requireCurrent().keyId;
  }

  /** CKA_START_DATE of the current version (day precision); undefined for objects without one. */
  async currentKeyCreatedAt(): Promise<number | undefined> {
    return this.requireCurrent().createdAt;
  }

  async encrypt(plaintext: Uint8Array): Promise<WrapResult> {
    return this.withSession('encrypt', async (session, conn) => {
      const key = this.requireCurrent();
      const max = maxPlaintextBytes(conn.mechanism, key.id.length);
      // Kubernetes never wraps an empty DEK or seed, and PKCS#11 modules reject empty input.
      if (plaintext.length === 0) throw new BackendError('INTERNAL', 'the pkcs11 backend does not wrap an empty plaintext');
      if (plaintext.length > max) {
        throw new BackendError('INTERNAL', `plaintext of ${plaintext.length} bytes is larger than the ${max} bytes the pkcs11 backend wraps`);
      }
      const header = encodeHeader(conn.mechanism, key.id);
      const ciphertext =
        conn.mechanism === MECH_AES_GCM
          ? await this.gcmEncrypt(session, key, header, plaintext)
          : Buffer.concat([header, await this.kwpWrap(session, key, plaintext)]);
      return { ciphertext, keyId: key.keyId };
    });
  }

  async decrypt(ciphertext: Uint8Array): Promise<Buffer> {
    const parsed = parseCiphertext(ciphertext);
    let key = this.versions.get(parsed.keyVersionId.toString('hex'));
    if (!key) {
      // Maybe a version rotate-key made since the last refresh.
      await this.refresh();
      key = this.versions.get(parsed.keyVersionId.toString('hex'));
    }
    if (!key) {
      throw new BackendError(
        'KEY_NOT_FOUND',
        `the ciphertext names key version ${parsed.keyVersionId.toString('hex')}, which is not in token ${JSON.stringify(this.config.tokenLabel)} under label ${JSON.stringify(this.config.keyLabel)}`,
      );
    }
    const idHex = key.idHex;
    return this.withSession('decrypt', async (session) => {
      // Looked up per attempt: a retry after a reload of the versions must use the fresh handle.
      const version = this.versions.get(idHex);
      if (!version) throw new BackendError('KEY_NOT_FOUND', `key version ${idHex} disappeared from token ${JSON.stringify(this.config.tokenLabel)}`);
      try {
        if (parsed.mechanism === MECH_AES_GCM) return await this.gcmDecrypt(session, version, parsed.header, parsed.body);
        const inner = await this.kwpUnwrap(session, version, parsed.body);
        try {
          return decodeKwpInner(inner, parsed.keyVersionId);
        } finally {
          inner.fill(0);
        }
      } catch (err) {
        if (ckrOf(err) === CKR.KEY_FUNCTION_NOT_PERMITTED) {
          // What a retired version answers (retirement.ts): say how to bring it back.
          throw retiredVersionError(this.config, version.keyId, err);
        }
        if (mayBeBadCiphertext(err)) {
          // SoftHSM reports a failed tag check as CKR_GENERAL_ERROR: only blame the ciphertext when
          // the session demonstrably still works.
          this.lib.api.C_GetSessionInfo(session);
          throw new BackendError('INVALID_CIPHERTEXT', `pkcs11 ciphertext does not authenticate under key version ${version.idHex}`, { cause: err });
        }
        throw err;
      }
    });
  }

  /** The versions that may unwrap (not retired), as the last listing found them. */
  usableKeyIds(): ReadonlySet<string> {
    return this.usability.usableKeyIds;
  }

  wrappedBy(ciphertext: Uint8Array): WrappingVersion | undefined {
    return this.usability.wrappedBy(ciphertext);
  }

  /** Every listed version's public facts (what the backend thread tells its host). */
  get versionUsability(): VersionUsability[] {
    return this.usability.versions;
  }

  /**
   * Re-reads the key objects: picks up versions rotate-key added and versions retired or restored
   * (in any process). Concurrent callers share one listing.
   */
  refresh(): Promise<void> {
    this.refreshing ??= this.reloadVersions().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async reloadVersions(): Promise<void> {
    const before = this.current;
    const versions = await this.withSession('list key versions', (session) =>
      listKeyVersions(this.lib, session, this.config.tokenLabel, this.config.keyLabel),
    );
    this.versions = new Map(versions.map((v) => [v.idHex, v]));
    this.usability = new Pkcs11Usability(versions.map(({ idHex, keyId, usable }) => ({ idHex, keyId, usable })), keyPlaceOf(this.config));
    this.current = versions.at(-1);
    if (before && this.current && before.idHex !== this.current.idHex) {
      this.log.info({ event: 'pkcs11-key-rotated', backend: 'pkcs11', keyId: this.current.keyId, previousKeyId: before.keyId, versions: versions.length }, 'pkcs11 key rotated');
    } else if (before && !this.current) {
      this.log.error({ event: 'pkcs11-keys-missing', backend: 'pkcs11', keyLabel: this.config.keyLabel }, 'pkcs11 key objects disappeared from the token');
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Wait for calls still running in the module before C_Finalize can happen.
    await this.dropConnection();
    this.lib.release();
  }

  private requireCurrent(): KeyVersion {
    if (!this.current) {
      throw new BackendError('KEY_NOT_FOUND', `no key labelled ${JSON.stringify(this.config.keyLabel)} in token ${JSON.stringify(this.config.tokenLabel)}`);
    }
    return this.current;
  }

  /** Returns the whole ciphertext: header ‖ iv ‖ sealed, written into one buffer. */
  private async gcmEncrypt(session: Handle, key: KeyVersion, header: Buffer, plaintext: Uint8Array): Promise<Buffer> {
    const { api, k } = this.lib;
    const out = Buffer.allocUnsafe(header.length + GCM_IV_BYTES + plaintext.length + GCM_TAG_BYTES);
    header.copy(out, 0);
    // Random 96-bit IVs (node's CSPRNG): far below the 2^32 wraps NIST allows per key with random
    // IVs at any realistic rate between rotations.
    const iv = out.subarray(header.length, header.length + GCM_IV_BYTES);
    randomFillSync(iv);
    api.C_EncryptInit(session, { mechanism: k.CKM_AES_GCM, parameter: gcmParams(this.lib, iv, header) }, key.handle);
    const target = out.subarray(header.length + GCM_IV_BYTES);
    const input = Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
    const sealed = this.async ? await api.C_EncryptAsync(session, input, target) : api.C_Encrypt(session, input, target);
    if (sealed.length !== target.length) throw new BackendError('INTERNAL', `C_Encrypt returned ${sealed.length} bytes for AES-GCM, expected ${target.length}`);
    // pkcs11js returns a view of the output buffer; copy only if a version ever returns another one.
    if (sealed.buffer !== target.buffer || sealed.byteOffset !== target.byteOffset) sealed.copy(target);
    return out;
  }

  private async gcmDecrypt(session: Handle, key: KeyVersion, aad: Buffer, body: Buffer): Promise<Buffer> {
    const { api, k } = this.lib;
    const iv = body.subarray(0, GCM_IV_BYTES);
    api.C_DecryptInit(session, { mechanism: k.CKM_AES_GCM, parameter: gcmParams(this.lib, iv, aad) }, key.handle);
    const sealed = body.subarray(GCM_IV_BYTES);
    // Some modules write the whole input before checking the tag, so the buffer is input-sized.
    const out = Buffer.alloc(sealed.length);
    return this.async ? await api.C_DecryptAsync(session, sealed, out) : api.C_Decrypt(session, sealed, out);
  }

  /** Imports the plaintext as a short-lived session object and wraps it with C_WrapKey. */
  private async kwpWrap(session: Handle, key: KeyVersion, plaintext: Uint8Array): Promise<Buffer> {
    const { api, k } = this.lib;
    const inner = encodeKwpInner(key.id, plaintext);
    const object = api.C_CreateObject(session, [
      { type: k.CKA_CLASS, value: k.CKO_SECRET_KEY },
      { type: k.CKA_KEY_TYPE, value: k.CKK_GENERIC_SECRET },
      { type: k.CKA_TOKEN, value: false },
      { type: k.CKA_SENSITIVE, value: false },
      { type: k.CKA_EXTRACTABLE, value: true },
      { type: k.CKA_VALUE, value: inner },
    ]);
    inner.fill(0);
    try {
      const mechanism = { mechanism: k.CKM_AES_KEY_WRAP_PAD };
      const out = Buffer.alloc(inner.length + 16);
      return this.async ? await api.C_WrapKeyAsync(session, mechanism, key.handle, object, out) : api.C_WrapKey(session, mechanism, key.handle, object, out);
    } finally {
      destroyQuietly(this.lib, session, object);
    }
  }

  /** Unwraps into a short-lived session object and reads its value back. */
  private async kwpUnwrap(session: Handle, key: KeyVersion, wrapped: Buffer): Promise<Buffer> {
    const { api, k } = this.lib;
    const mechanism = { mechanism: k.CKM_AES_KEY_WRAP_PAD };
    const template = [
      { type: k.CKA_CLASS, value: k.CKO_SECRET_KEY },
      { type: k.CKA_KEY_TYPE, value: k.CKK_GENERIC_SECRET },
      { type: k.CKA_TOKEN, value: false },
      { type: k.CKA_SENSITIVE, value: false },
      { type: k.CKA_EXTRACTABLE, value: true },
    ];
    const object = this.async
      ? await api.C_UnwrapKeyAsync(session, mechanism, key.handle, wrapped, template)
      : api.C_UnwrapKey(session, mechanism, key.handle, wrapped, template);
    try {
      const value = api.C_GetAttributeValue(session, object, [{ type: k.CKA_VALUE }])[0]?.value;
      if (!value) throw new BackendError('INTERNAL', 'the unwrapped object has no CKA_VALUE');
      return value;
    } finally {
      destroyQuietly(this.lib, session, object);
    }
  }

  /**
   * Runs `op` on a leased session. When the session or token went away it reconnects and retries
   * once; stale key handles trigger one reload of the key versions. PKCS#11 failures become
   * BackendErrors (lost token → UNAVAILABLE).
   */
  private async withSession<T>(what: string, op: (session: Handle, conn: Connection) => Promise<T> | T): Promise<T> {
    // One reconnect and one reload of the key handles (a module may hand out new handles after a
    // new login, as SoftHSM does for private objects).
    let reconnected = false;
    let reloaded = false;
    for (;;) {
      const conn = this.getConnection();
      try {
        return await conn.pool.use((session) => op(session, conn));
      } catch (err) {
        if (err instanceof PoolClosedError) {
          if (!reconnected && !this.closed) {
            reconnected = true;
            continue;
          }
          throw err;
        }
        if (isConnectionLost(err)) {
          this.log.warn({ event: 'pkcs11-session-lost', backend: 'pkcs11', op: what, error: describePkcs11Error(err) }, 'pkcs11 session lost; reconnecting');
          void this.dropConnection(conn);
          if (!reconnected && !this.closed) {
            reconnected = true;
            continue;
          }
          throw backendErrorFrom('UNAVAILABLE', `pkcs11 ${what}: token ${JSON.stringify(this.config.tokenLabel)} is not reachable`, err);
        }
        if (isHandleInvalid(err) && !reloaded && !this.closed && what !== 'list key versions') {
          reloaded = true;
          await this.refresh();
          continue;
        }
        throw backendErrorFrom('INTERNAL', `pkcs11 ${what} failed`, err);
      }
    }
  }

  private getConnection(): Connection {
    if (this.closed) throw new BackendError('UNAVAILABLE', 'the pkcs11 backend is closed');
    return this.connection ?? this.connect();
  }

  /**
   * Opens sessions and logs in (synchronous PKCS#11 calls, so never two at once). After a failure,
   * calls fail fast for RECONNECT_BACKOFF_MS instead of hammering the HSM.
   */
  private connect(): Connection {
    const failure = this.lastConnectFailure;
    if (failure && Date.now() - failure.at < RECONNECT_BACKOFF_MS) throw failure.error;
    const { config, lib } = this;
    try {
      const opened = openTokenSessions(lib, config.tokenLabel, config.pin, lib.threadSafe ? config.sessions : 1, false);
      const pool = new SessionPool(opened.sessions, (session) => closeSessions(lib, [session]));
      try {
        this.connection = { pool, mechanism: chooseMechanism(lib, opened.mechanisms, config.mechanism, config.tokenLabel) };
      } catch (err) {
        pool.close();
        throw err;
      }
      this.lastConnectFailure = undefined;
      return this.connection;
    } catch (err) {
      const error = err instanceof BackendError ? err : backendErrorFrom('UNAVAILABLE', `token ${JSON.stringify(config.tokenLabel)}`, err);
      this.lastConnectFailure = { at: Date.now(), error };
      throw error;
    }
  }

  /** Forgets the connection (any, or only if it is still `which`); its sessions close when idle. */
  private dropConnection(which?: Connection): Promise<void> {
    const conn = this.connection;
    if (!conn || (which && conn !== which)) return Promise.resolve();
    this.connection = undefined;
    conn.pool.close();
    return conn.pool.drained();
  }
}

/** CK_GCM_PARAMS as PKCS#11 2.40 defines it (with ulIvBits), which SoftHSM 2.6 and HSMs expect. */
function gcmParams(lib: Pkcs11Library, iv: Buffer, aad: Buffer): GcmParams {
  return { type: lib.k.CK_PARAMS_AES_GCM_v240, iv, ivBits: GCM_IV_BYTES * 8, aad, tagBits: GCM_TAG_BYTES * 8 };
}

function destroyQuietly(lib: Pkcs11Library, session: Handle, object: Handle): void {
  try {
    lib.api.C_DestroyObject(session, object);
  } catch {
    // A session object also disappears when its session closes.
  }
}
