// The KEK of the kmip backend: AES-256 key objects on a KMIP server, one per version, named
// `<name>/v<n>` and grouped in Object Group `<name>`. DEKs are wrapped and unwrapped by the server
// (server-side Encrypt/Decrypt); the key never leaves it. The ciphertext records the KMIP unique
// identifier that wrapped it (wrapped.ts), so old versions keep unwrapping after a rotation; which
// versions may still unwrap (Active ones) is tracked in versions.ts.
import { Counter, Histogram } from 'prom-client';
import { BackendError, type BackendContext, type KekBackend, type WrapResult, type WrappingVersion } from '../backend.js';
import type { Logger } from '../../log.js';
import type { Registry } from '../../metrics.js';
import { KmipClient, type CipherMode, type KmipClientOptions } from './client.js';
import type { KmipSettings } from './config.js';
import { KmipError } from './errors.js';
import { ResultReason, STATE_NAMES, State } from './tags.js';
import { KmipVersionStates, keyIdOf, notActiveError, versionLabel, versionName } from './versions.js';
import { MAX_WRAPPED_BYTES, encodeWrapped, parseWrapped, wrappedAad, wrappedHeader } from './wrapped.js';

export { keyIdOf, versionName };

export interface KeyVersion {
  uid: string;
  version: number;
  state: number | undefined;
  /** When the server created the object (Initial Date, else Activation Date), epoch ms; undefined when it reports neither. */
  createdAt?: number;
}

function createdAtOf(d: { initialDate?: number; activationDate?: number }): { createdAt?: number } {
  const t = d.initialDate ?? d.activationDate;
  return t === undefined ? {} : { createdAt: t };
}

const GCM_TAG_BYTES = 16;
const HEALTH_PROBE = Buffer.alloc(32);
/** The server's answer on a failed GCM tag / CBC padding check (PyKMIP says General Failure). */
const DECRYPT_REJECTED = new Set<number>([ResultReason.GeneralFailure, ResultReason.CryptographicFailure]);

/** The version number in a Name like `<keyName>/v12`, or undefined. */
export function versionOf(keyName: string, names: string[]): number | undefined {
  const prefix = `${keyName}/v`;
  for (const n of names) {
    if (n.startsWith(prefix) && /^[1-9][0-9]{0,8}$/.test(n.slice(prefix.length))) return Number(n.slice(prefix.length));
  }
  return undefined;
}

/** KMIP call latency and errors, registered once per Registry. */
function kmipObserver(registry: Registry | undefined): KmipClientOptions['observe'] {
  if (!registry) return undefined;
  const durName = 'atrest_kmip_request_duration_seconds';
  const errName = 'atrest_kmip_request_errors_total';
  const duration =
    (registry.getSingleMetric(durName) as Histogram<'operation'> | undefined) ??
    new Histogram({
      name: durName,
      help: 'Latency of KMIP operations (retries included), by operation.',
      labelNames: ['operation'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
  const errors =
    (registry.getSingleMetric(errName) as Counter<'operation' | 'reason'> | undefined) ??
    new Counter({
      name: errName,
      help: 'Failed KMIP operations, by operation and reason (KMIP result reason or transport error code).',
      labelNames: ['operation', 'reason'],
      registers: [registry],
    });
  return (operation, seconds, outcome) => {
    duration.observe({ operation }, seconds);
    if (outcome !== 'ok') errors.inc({ operation, reason: outcome });
  };
}

export function newKmipClient(s: KmipSettings, registry?: Registry): KmipClient {
  const observe = kmipObserver(registry);
  return new KmipClient({
    host: s.host,
    port: s.port,
    ca: s.ca,
    cert: s.cert,
    key: s.key,
    ...(s.servername === undefined ? {} : { servername: s.servername }),
    timeoutMs: s.timeoutMs,
    maxConnections: s.connections,
    ...(observe ? { observe } : {}),
  });
}

/** Turns a KmipError into the BackendError the plugin server maps to gRPC; `what` names the key. */
export function toBackendError(e: unknown, what: string): BackendError {
  if (e instanceof BackendError) return e;
  if (!(e instanceof KmipError)) return new BackendError('INTERNAL', `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  switch (e.code) {
    case 'KMIP_TRANSPORT':
    case 'KMIP_TIMEOUT':
    case 'KMIP_TLS':
    case 'KMIP_CLOSED':
      return new BackendError('UNAVAILABLE', `KMIP server unavailable (${what}): ${e.message}`, { cause: e });
    case 'KMIP_RESULT':
      if (e.resultReason === ResultReason.ItemNotFound) {
        return new BackendError('KEY_NOT_FOUND', `${what} does not exist on the KMIP server (destroyed?): ${e.message}`, { cause: e });
      }
      return new BackendError('INTERNAL', `${what}: ${e.message}`, { cause: e });
    default:
      return new BackendError('INTERNAL', `${what}: ${e.message}`, { cause: e });
  }
}

/**
 * Every version of `keyName` (any state), by Object Group then each object's Name and State. No
 * dates: only the current version's creation time is used (see withCreatedAt), and a date an old
 * version holds must not matter to anyone.
 */
export async function listVersions(client: KmipClient, keyName: string): Promise<KeyVersion[]> {
  const uids = await client.locate({ objectGroup: keyName, symmetricKeysOnly: true });
  const out: KeyVersion[] = [];
  for (const uid of uids) {
    const d = await client.describe(uid);
    const version = versionOf(keyName, d.names);
    if (version !== undefined) out.push({ uid, version, state: d.state });
  }
  return out.sort((a, b) => a.version - b.version);
}

/** `v` with the server's creation time of its object (one Get Attributes of the two dates). */
async function withCreatedAt(client: KmipClient, v: KeyVersion): Promise<KeyVersion> {
  return { ...v, ...createdAtOf(await client.describe(v.uid, { dates: true })) };
}

/** Creates and activates version `version` of `keyName`. */
export async function createVersion(client: KmipClient, keyName: string, version: number): Promise<KeyVersion> {
  const name = versionName(keyName, version);
  const uid = await client.createAesKey({ names: [name], objectGroup: keyName });
  try {
    await client.activate(uid);
  } catch (e) {
    throw toBackendError(e, `activating new KMIP key ${name} (unique identifier ${uid}, left Pre-Active)`);
  }
  return { uid, version, state: State.Active };
}

/** Picks the wrapping mode and the request protocol version from the server's Discover Versions. */
export async function negotiate(client: KmipClient, cipher: KmipSettings['cipher']): Promise<CipherMode> {
  const versions = await client.discoverVersions();
  const speaks14 = versions.some((v) => v.major === 1 && v.minor === 4);
  if (speaks14) {
    client.useProtocolVersion({ major: 1, minor: 4 });
    return cipher === 'cbc' ? 'cbc' : 'gcm';
  }
  if (cipher === 'gcm') throw new BackendError('CONFIG', `--kmip-cipher gcm needs KMIP 1.4, which the server at ${client.endpoint} does not offer`);
  const v1 = versions.filter((v) => v.major === 1 && v.minor >= 2 && v.minor <= 3).sort((a, b) => b.minor - a.minor)[0];
  if (!v1) throw new BackendError('CONFIG', `the KMIP server at ${client.endpoint} offers no protocol version from 1.2 to 1.4`);
  client.useProtocolVersion(v1);
  return 'cbc';
}

export interface KmipKekOptions {
  client: KmipClient;
  keyName: string;
  mode: CipherMode;
  current: KeyVersion;
  known: KeyVersion[];
  log: Logger;
  /** How long a health result is reused. Default 5000. */
  healthTtlMs?: number;
}

export class KmipKek implements KekBackend {
  readonly kind = 'kmip';
  /** HealthCheck name. */
  readonly name = 'kmip';
  private readonly client: KmipClient;
  private readonly keyName: string;
  private readonly mode: CipherMode;
  private readonly log: Logger;
  private readonly healthTtlMs: number;
  private current: KeyVersion;
  private currentHeader: Buffer;
  private currentAad: Buffer;
  /** uid → version and State, for objects confirmed to belong to this key family. */
  private readonly versions: KmipVersionStates;
  private health: { at: number; result: Promise<void> } | undefined;

  constructor(o: KmipKekOptions) {
    this.client = o.client;
    this.keyName = o.keyName;
    this.mode = o.mode;
    this.log = o.log;
    this.healthTtlMs = o.healthTtlMs ?? 5000;
    this.versions = new KmipVersionStates(o.keyName, [...o.known, o.current]);
    this.current = o.current;
    this.currentHeader = wrappedHeader(this.mode, this.current.uid);
    this.currentAad = wrappedAad(this.currentHeader);
  }

  /** Opens the key family: negotiates the mode and finds the newest Active version. */
  static async open(settings: KmipSettings, context: BackendContext, healthTtlMs?: number): Promise<KmipKek> {
    const client = newKmipClient(settings, context.metrics);
    try {
      const mode = await negotiate(client, settings.cipher);
      const versions = await listVersions(client, settings.keyName);
      const active = versions.filter((v) => v.state === State.Active);
      const newest = active[active.length - 1];
      if (!newest) {
        throw new BackendError(
          'KEY_NOT_FOUND',
          versions.length === 0
            ? `--kmip-key-name: no KMIP key ${JSON.stringify(settings.keyName)} on ${client.endpoint}; create it with \`atrest kms-plugin init-key --backend kmip ...\``
            : `--kmip-key-name: no Active version of KMIP key ${JSON.stringify(settings.keyName)} (${versions.map((v) => `v${v.version} ${STATE_NAMES[v.state ?? 0] ?? 'unknown'}`).join(', ')})`,
        );
      }
      const current = await withCreatedAt(client, newest);
      context.log.info({ endpoint: client.endpoint, keyName: settings.keyName, version: current.version, mode }, 'kmip backend opened');
      return new KmipKek({ client, keyName: settings.keyName, mode, current, known: versions, log: context.log, ...(healthTtlMs === undefined ? {} : { healthTtlMs }) });
    } catch (e) {
      client.close();
      throw toBackendError(e, `KMIP key ${JSON.stringify(settings.keyName)}`);
    }
  }

  get wrappingMode(): CipherMode {
    return this.mode;
  }

  get currentVersion(): KeyVersion {
    return { ...this.current };
  }

  async currentKeyId(): Promise<string> {
    return keyIdOf(this.keyName, this.current);
  }

  /** The current version's Initial Date (else Activation Date) as the server reported it. */
  async currentKeyCreatedAt(): Promise<number | undefined> {
    return this.current.createdAt;
  }

  async encrypt(plaintext: Uint8Array): Promise<WrapResult> {
    const cur = this.current;
    const header = this.currentHeader;
    let r;
    try {
      r = await this.client.encrypt(cur.uid, plaintext, this.mode === 'gcm' ? { mode: 'gcm', aad: this.currentAad, tagLength: GCM_TAG_BYTES } : { mode: 'cbc' });
    } catch (e) {
      throw await this.explain(e, cur.uid, cur.version);
    }
    if (this.mode === 'gcm' && r.tag?.length !== GCM_TAG_BYTES) throw new BackendError('INTERNAL', `KMIP server returned a ${r.tag?.length ?? 0}-byte GCM tag, expected ${GCM_TAG_BYTES}`);
    let ciphertext: Buffer;
    try {
      ciphertext = encodeWrapped(header, r);
    } catch (e) {
      throw new BackendError('INTERNAL', `KMIP server returned an unusable Encrypt result: ${(e as Error).message}`, { cause: e });
    }
    if (ciphertext.length > MAX_WRAPPED_BYTES) {
      throw new BackendError('INTERNAL', `wrapped key of ${ciphertext.length} bytes exceeds the ${MAX_WRAPPED_BYTES}-byte limit (plaintext of ${plaintext.length} bytes)`);
    }
    return { ciphertext, keyId: keyIdOf(this.keyName, cur) };
  }

  async decrypt(ciphertext: Uint8Array): Promise<Buffer> {
    const parsed = parseWrapped(ciphertext);
    if ('error' in parsed) throw new BackendError('INVALID_CIPHERTEXT', `not a kmip backend ciphertext: ${parsed.error}`);
    const { wrapped, header } = parsed;
    const version = await this.versionOfUid(wrapped.uid);
    try {
      return await this.client.decrypt(
        wrapped.uid,
        wrapped.data,
        wrapped.mode === 'gcm' ? { mode: 'gcm', iv: wrapped.iv, aad: wrappedAad(header), tag: wrapped.tag! } : { mode: 'cbc', iv: wrapped.iv },
      );
    } catch (e) {
      if (e instanceof KmipError && e.code === 'KMIP_RESULT' && e.resultReason !== undefined && DECRYPT_REJECTED.has(e.resultReason)) {
        throw new BackendError('INVALID_CIPHERTEXT', `KMIP key ${versionName(this.keyName, version)} rejected the ciphertext (tampered or not ours): ${e.message}`, { cause: e });
      }
      throw await this.explain(e, wrapped.uid, version);
    }
  }

  /** The versions that may unwrap (Active), as the last refresh found them. */
  usableKeyIds(): ReadonlySet<string> {
    return this.versions.usableKeyIds();
  }

  wrappedBy(ciphertext: Uint8Array): WrappingVersion | undefined {
    return this.versions.wrappedBy(ciphertext);
  }

  /**
   * Adopts newer Active versions created by rotate-key, then re-reads the State of the versions
   * believed Active, so a retirement (revocation) made by another process is seen (versions.ts).
   */
  async refresh(): Promise<void> {
    await this.adoptNewVersions();
    try {
      await this.versions.reload(this.client);
    } catch (e) {
      throw toBackendError(e, `reading the State of the versions of KMIP key ${JSON.stringify(this.keyName)}`);
    }
  }

  /**
   * Looks up `<name>/v<n+1>`, `<name>/v<n+2>`, ... by Name and stops at the first that does not
   * exist (one Locate when nothing changed). A version that exists but is not Active (an activation
   * that failed) is stepped over.
   */
  private async adoptNewVersions(): Promise<void> {
    for (let next = this.current.version + 1; ; next++) {
      let uids: string[];
      let state: number | undefined;
      let dates: { createdAt?: number };
      try {
        uids = await this.client.locate({ name: versionName(this.keyName, next) });
        if (uids.length === 0) return;
        if (uids.length > 1) throw new BackendError('INTERNAL', `${uids.length} KMIP objects are named ${versionName(this.keyName, next)}`);
        const d = await this.client.describe(uids[0]!, { dates: true });
        state = d.state;
        dates = createdAtOf(d);
      } catch (e) {
        throw toBackendError(e, `looking for KMIP key ${versionName(this.keyName, next)}`);
      }
      this.versions.learn(uids[0]!, next, state);
      if (state !== State.Active) continue;
      const v: KeyVersion = { uid: uids[0]!, version: next, state, ...dates };
      this.current = v;
      this.currentHeader = wrappedHeader(this.mode, v.uid);
      this.currentAad = wrappedAad(this.currentHeader);
      this.health = undefined;
      this.log.info({ keyName: this.keyName, version: next }, 'kmip backend: new key version is current');
    }
  }

  /** HealthCheck: a real wrap/unwrap round trip through the KMIP server, reused for a few seconds. */
  check(): Promise<void> {
    const now = Date.now();
    if (this.health && now - this.health.at < this.healthTtlMs) return this.health.result;
    const result = (async () => {
      const w = await this.encrypt(HEALTH_PROBE);
      const back = await this.decrypt(w.ciphertext);
      if (!back.equals(HEALTH_PROBE)) throw new BackendError('INTERNAL', 'KMIP health probe did not round-trip');
    })();
    result.catch(() => undefined);
    this.health = { at: now, result };
    return result;
  }

  async close(): Promise<void> {
    this.client.close();
  }

  /** The version of a uid in a ciphertext; refuses objects outside this key family. */
  private async versionOfUid(uid: string): Promise<number> {
    const known = this.versions.versionOf(uid);
    if (known !== undefined) return known;
    let names: string[];
    let state: number | undefined;
    try {
      ({ names, state } = await this.client.describe(uid));
    } catch (e) {
      throw toBackendError(e, `KMIP object ${JSON.stringify(uid)} named in the ciphertext`);
    }
    const version = versionOf(this.keyName, names);
    if (version === undefined) {
      throw new BackendError('INVALID_CIPHERTEXT', `the ciphertext names KMIP object ${JSON.stringify(uid)}, which is not a version of key ${JSON.stringify(this.keyName)}`);
    }
    this.versions.learn(uid, version, state);
    return version;
  }

  /** A clear error for a failed Encrypt/Decrypt: says when the key was revoked or destroyed. */
  private async explain(e: unknown, uid: string, version: number): Promise<BackendError> {
    const label = versionLabel(this.keyName, uid, version);
    if (e instanceof KmipError && e.code === 'KMIP_RESULT' && e.resultReason === ResultReason.PermissionDenied) {
      try {
        const { state } = await this.client.describe(uid);
        if (state !== undefined && state !== State.Active) {
          this.versions.learn(uid, version, state);
          return notActiveError(label, keyIdOf(this.keyName, { uid, version }), state, { message: e.message, cause: e });
        }
      } catch (inner) {
        return toBackendError(inner, label);
      }
    }
    return toBackendError(e, label);
  }
}
