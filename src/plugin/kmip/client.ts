// A small KMIP 1.x client over mutual TLS: the operations a KEK backend needs (Create, Activate,
// Locate, Get Attributes, Encrypt, Decrypt, Revoke, Destroy, Discover Versions). Connections are
// pooled and reused; every attempt has a timeout; transport failures are retried a bounded number
// of times with exponential backoff (only for idempotent operations once a request was sent).
// Message encoding lives in messages.ts, the wire codec in ttlv.ts.
import { KmipConnection, type KmipTlsOptions } from './connection.js';
import { KmipError } from './errors.js';
import {
  createAesKeyPayload,
  decodeResponse,
  decryptPayload,
  encodeRequest,
  encryptPayload,
  getAttributesPayload,
  locatePayload,
  revokePayload,
  supportsGcm,
  uidPayload,
  type CipherMode,
  type CreateKeyOptions,
  type DecryptOptions,
  type EncryptOptions,
  type LocateQuery,
  type ProtocolVersion,
} from './messages.js';
import { AttributeName, OPERATION_NAMES, Operation, RESULT_REASON_NAMES, Tag, type OperationCode } from './tags.js';
import { ItemType, child, children, required, type TtlvItem } from './ttlv.js';

export type { CipherMode, CreateKeyOptions, DecryptOptions, EncryptOptions, LocateQuery, ProtocolVersion };

export interface KmipClientOptions {
  host: string;
  port: number;
  /** PEM CA certificate(s), client certificate and its key (contents, not paths). */
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** Name checked against the server certificate; default: `host` (IP SANs for an IP). */
  servername?: string;
  /** Protocol version put in request headers; 1.4 enables the AES-GCM fields. Default 1.4. */
  protocolVersion?: ProtocolVersion;
  /** Per attempt, from taking a connection to the full response. Default 5000. */
  timeoutMs?: number;
  /** TCP connect plus TLS handshake. Default 3000. */
  connectTimeoutMs?: number;
  /** Open connections kept at most. Default 4. */
  maxConnections?: number;
  /** Extra attempts after a transport failure. Default 2. */
  retries?: number;
  /** First backoff delay; doubles per retry (with jitter), capped at 2 s. Default 100. */
  retryBaseMs?: number;
  /** Largest response accepted. Default 1 MiB. */
  maxResponseBytes?: number;
  /** Called once per operation with its outcome: 'ok', a KmipError code or a Result Reason name. */
  observe?: (operation: string, seconds: number, outcome: string) => void;
}

export interface EncryptResult {
  data: Buffer;
  /** The IV/nonce the server generated. */
  iv: Buffer;
  /** GCM only. */
  tag?: Buffer;
}

/** What describe() returns; the dates (epoch ms) only when asked for and reported. */
export interface ObjectDescription {
  names: string[];
  state: number | undefined;
  initialDate?: number;
  activationDate?: number;
}

/** A decoded Attribute: its name and raw value item (Get Attributes). */
export interface KmipAttribute {
  name: string;
  value: TtlvItem;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A small pool: idle connections are reused, at most `max` are open, callers queue beyond that. */
class ConnectionPool {
  private idle: KmipConnection[] = [];
  private open = 0;
  private waiters: Array<() => void> = [];
  private closed = false;

  constructor(
    private readonly tlsOptions: KmipTlsOptions,
    private readonly max: number,
  ) {}

  async acquire(deadline: number): Promise<KmipConnection> {
    for (;;) {
      if (this.closed) throw new KmipError('KMIP_CLOSED', 'KMIP client is closed');
      let c: KmipConnection | undefined;
      while ((c = this.idle.pop()) !== undefined) {
        if (c.usable) {
          c.setIdle(false);
          return c;
        }
        this.open--;
      }
      if (this.open < this.max) {
        this.open++;
        try {
          const conn = await KmipConnection.open(this.tlsOptions);
          if (this.closed) {
            conn.destroy();
            throw new KmipError('KMIP_CLOSED', 'KMIP client is closed');
          }
          return conn;
        } catch (e) {
          this.open--;
          this.wakeOne();
          throw e;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new KmipError('KMIP_TIMEOUT', `no free KMIP connection (all ${this.max} busy)`);
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== wake);
          resolve();
        }, left);
        this.waiters.push(wake);
      });
    }
  }

  release(c: KmipConnection, reusable: boolean): void {
    if (reusable && c.usable && !this.closed) {
      c.setIdle(true);
      this.idle.push(c);
    } else {
      c.destroy();
      this.open--;
    }
    this.wakeOne();
  }

  close(): void {
    this.closed = true;
    for (const c of this.idle) c.destroy();
    this.open -= this.idle.length;
    this.idle = [];
    for (const w of this.waiters.splice(0)) w();
  }

  private wakeOne(): void {
    this.waiters.shift()?.();
  }
}

export class KmipClient {
  readonly endpoint: string;
  private protocol: ProtocolVersion;
  private readonly pool: ConnectionPool;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly retryBaseMs: number;
  private readonly maxResponseBytes: number;
  private readonly observe: KmipClientOptions['observe'];

  constructor(opts: KmipClientOptions) {
    this.endpoint = `${opts.host}:${opts.port}`;
    this.protocol = opts.protocolVersion ?? { major: 1, minor: 4 };
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.retries = opts.retries ?? 2;
    this.retryBaseMs = opts.retryBaseMs ?? 100;
    this.maxResponseBytes = opts.maxResponseBytes ?? 1 << 20;
    this.observe = opts.observe;
    this.pool = new ConnectionPool(
      {
        host: opts.host,
        port: opts.port,
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        ...(opts.servername === undefined ? {} : { servername: opts.servername }),
        connectTimeoutMs: opts.connectTimeoutMs ?? 3000,
        maxResponseBytes: this.maxResponseBytes,
      },
      Math.max(1, opts.maxConnections ?? 4),
    );
  }

  get protocolVersion(): ProtocolVersion {
    return { ...this.protocol };
  }

  /** Changes the protocol version of later requests (after Discover Versions). */
  useProtocolVersion(v: ProtocolVersion): void {
    this.protocol = { ...v };
  }

  /** Closes idle connections and refuses new calls. */
  close(): void {
    this.pool.close();
  }

  /** Creates an AES-256 key usable for Encrypt and Decrypt; returns its Unique Identifier. */
  async createAesKey(opts: CreateKeyOptions): Promise<string> {
    const payload = await this.call(Operation.Create, createAesKeyPayload(opts), false);
    return required(payload, Tag.UniqueIdentifier, ItemType.TextString, 'Unique Identifier');
  }

  async activate(uid: string): Promise<void> {
    await this.call(Operation.Activate, uidPayload(uid), true);
  }

  /** Unique Identifiers of the objects matching every given attribute (newest first on PyKMIP). */
  async locate(q: LocateQuery): Promise<string[]> {
    const payload = await this.call(Operation.Locate, locatePayload(q), true);
    return children(payload, Tag.UniqueIdentifier).map((c) => {
      if (c.type !== ItemType.TextString) throw new KmipError('KMIP_PROTOCOL', 'Locate returned a Unique Identifier that is not a Text String');
      return c.value;
    });
  }

  /** The requested attributes of an object (every instance of multi-valued ones). */
  async getAttributes(uid: string, names: string[]): Promise<KmipAttribute[]> {
    const payload = await this.call(Operation.GetAttributes, getAttributesPayload(uid, names), true);
    return children(payload, Tag.Attribute).map((a) => {
      const name = required(a, Tag.AttributeName, ItemType.TextString, 'Attribute Name');
      const value = child(a, Tag.AttributeValue);
      if (value === undefined) throw new KmipError('KMIP_PROTOCOL', `Get Attributes returned attribute ${JSON.stringify(name)} without a value`);
      return { name, value };
    });
  }

  /**
   * The Name values and State of an object, the two attributes a KEK backend looks at; with `dates`
   * also its Initial Date (when the server created it) and Activation Date, in epoch ms, each only
   * when the server reports it (PyKMIP 0.10 reports Initial Date and never Activation Date).
   */
  async describe(uid: string, opts: { dates?: boolean } = {}): Promise<ObjectDescription> {
    const wanted: string[] = [AttributeName.Name, AttributeName.State];
    if (opts.dates) wanted.push(AttributeName.InitialDate, AttributeName.ActivationDate);
    const attrs = await this.getAttributes(uid, wanted);
    const out: ObjectDescription = { names: [], state: undefined };
    for (const a of attrs) {
      if (a.name === AttributeName.Name) out.names.push(required(a.value, Tag.NameValue, ItemType.TextString, 'Name Value'));
      else if (a.name === AttributeName.State && a.value.type === ItemType.Enumeration) out.state = a.value.value;
      else if (opts.dates && (a.name === AttributeName.InitialDate || a.name === AttributeName.ActivationDate)) {
        if (a.value.type !== ItemType.DateTime) throw new KmipError('KMIP_PROTOCOL', `Get Attributes returned ${a.name} that is not a Date-Time`);
        // Seconds since the epoch; 0 is what PyKMIP stores for "never set".
        if (a.value.value > 0n) out[a.name === AttributeName.InitialDate ? 'initialDate' : 'activationDate'] = Number(a.value.value) * 1000;
      }
    }
    return out;
  }

  /** Server-side encryption; the server generates the IV (returned). */
  async encrypt(uid: string, data: Uint8Array, o: EncryptOptions): Promise<EncryptResult> {
    this.requireGcmSupport(o.mode);
    const payload = await this.call(Operation.Encrypt, encryptPayload(uid, data, o), true);
    const out: EncryptResult = {
      data: required(payload, Tag.Data, ItemType.ByteString, 'Data'),
      iv: required(payload, Tag.IvCounterNonce, ItemType.ByteString, 'IV/Counter/Nonce'),
    };
    if (o.mode === 'gcm') out.tag = required(payload, Tag.AuthenticatedEncryptionTag, ItemType.ByteString, 'Authenticated Encryption Tag');
    return out;
  }

  async decrypt(uid: string, data: Uint8Array, o: DecryptOptions): Promise<Buffer> {
    this.requireGcmSupport(o.mode);
    const payload = await this.call(Operation.Decrypt, decryptPayload(uid, data, o), true);
    return required(payload, Tag.Data, ItemType.ByteString, 'Data');
  }

  /** Revokes an object (its State becomes Deactivated, or Compromised for KeyCompromise). */
  async revoke(uid: string, reasonCode: number, message?: string): Promise<void> {
    await this.call(Operation.Revoke, revokePayload(uid, reasonCode, message), true);
  }

  async destroy(uid: string): Promise<void> {
    await this.call(Operation.Destroy, uidPayload(uid), true);
  }

  /** Protocol versions the server supports, preferred first. Sent with a KMIP 1.1 header. */
  async discoverVersions(): Promise<ProtocolVersion[]> {
    const payload = await this.call(Operation.DiscoverVersions, [], true, { major: 1, minor: 1 });
    return children(payload, Tag.ProtocolVersion).map((v) => ({
      major: required(v, Tag.ProtocolVersionMajor, ItemType.Integer, 'Protocol Version Major'),
      minor: required(v, Tag.ProtocolVersionMinor, ItemType.Integer, 'Protocol Version Minor'),
    }));
  }

  private requireGcmSupport(mode: CipherMode): void {
    const p = this.protocol;
    if (mode === 'gcm' && !supportsGcm(p)) {
      throw new KmipError('KMIP_ENCODE', `AES-GCM needs KMIP 1.4 request fields; this client speaks ${p.major}.${p.minor}`);
    }
  }

  /**
   * Sends one operation and returns its Response Payload. Transport failures are retried: always
   * when connecting failed (nothing was sent), and after sending only for idempotent operations.
   */
  private async call(op: OperationCode, payload: TtlvItem[], idempotent: boolean, version?: ProtocolVersion): Promise<TtlvItem> {
    const opName = OPERATION_NAMES[op] ?? `operation ${op}`;
    const request = encodeRequest(op, payload, version ?? this.protocol, this.maxResponseBytes);
    const started = process.hrtime.bigint();
    let outcome = 'ok';
    try {
      for (let attempt = 0; ; attempt++) {
        const deadline = Date.now() + this.timeoutMs;
        let conn: KmipConnection;
        try {
          conn = await this.pool.acquire(deadline);
        } catch (e) {
          if (attempt < this.retries && (e as KmipError).code === 'KMIP_TRANSPORT') {
            await this.backoff(attempt);
            continue;
          }
          throw e;
        }
        let response: Buffer;
        try {
          response = await conn.roundTrip(request, Math.max(1, deadline - Date.now()), this.timeoutMs);
          this.pool.release(conn, true);
        } catch (e) {
          this.pool.release(conn, false);
          if (attempt < this.retries && idempotent && (e as KmipError).code === 'KMIP_TRANSPORT') {
            await this.backoff(attempt);
            continue;
          }
          throw e;
        }
        return decodeResponse(response, op, this.maxResponseBytes);
      }
    } catch (e) {
      const err =
        e instanceof KmipError ? e : new KmipError('KMIP_PROTOCOL', `${opName}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      outcome = err.code === 'KMIP_RESULT' ? (RESULT_REASON_NAMES[err.resultReason ?? -1] ?? 'KMIP_RESULT') : err.code;
      if (err.code === 'KMIP_RESULT' || err.message.startsWith(opName)) throw err;
      throw new KmipError(err.code, `${opName}: ${err.message}`, {
        cause: err,
        ...(err.offset === undefined ? {} : { offset: err.offset }),
        ...(err.resultReason === undefined ? {} : { resultReason: err.resultReason }),
      });
    } finally {
      this.observe?.(opName, Number(process.hrtime.bigint() - started) / 1e9, outcome);
    }
  }

  private async backoff(attempt: number): Promise<void> {
    const base = Math.min(2000, this.retryBaseMs * 2 ** attempt);
    await sleep(base / 2 + Math.random() * (base / 2));
  }
}
