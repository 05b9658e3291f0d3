// One mutual-TLS connection to a KMIP server carrying one request/response at a time. Responses
// are framed by their TTLV header (8 bytes, then the Structure length) and capped in size.
import tls from 'node:tls';
import net from 'node:net';
import { KmipError } from './errors.js';
import { ttlvMessageSize } from './ttlv.js';

export interface KmipTlsOptions {
  host: string;
  port: number;
  /** PEM CA certificate(s) the server certificate must chain to. */
  ca: Buffer;
  /** PEM client certificate (chain) and its private key. */
  cert: Buffer;
  key: Buffer;
  /** Name checked against the server certificate; defaults to `host`. */
  servername?: string;
  connectTimeoutMs: number;
  maxResponseBytes: number;
}

/** Socket errors that mean "the server is not there (right now)". */
const TRANSPORT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EADDRNOTAVAIL',
]);

function errCode(err: unknown): string {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : '';
}

/** Maps a socket/TLS error to a KmipError naming the endpoint; TLS failures are not transient. */
export function classifySocketError(err: unknown, endpoint: string, phase: 'connect' | 'call'): KmipError {
  if (err instanceof KmipError) return err;
  const code = errCode(err);
  const msg = err instanceof Error ? err.message : String(err);
  if (TRANSPORT_CODES.has(code)) {
    return new KmipError('KMIP_TRANSPORT', `KMIP server ${endpoint} unreachable during ${phase}: ${code}`, { cause: err });
  }
  const alert = /^ERR_SSL_(?:TLSV1|SSLV3|TLSV13)_ALERT_(.+)$/.exec(code)?.[1];
  if (alert !== undefined) {
    const what = alert.toLowerCase().replace(/_/g, ' ');
    return new KmipError(
      'KMIP_TLS',
      `TLS with KMIP server ${endpoint} failed: the server refused the handshake (alert: ${what}); is the client certificate signed by a CA the server trusts, with extended key usage clientAuth?`,
      { cause: err },
    );
  }
  if (CERT_VERIFY_CODES.has(code)) {
    return new KmipError('KMIP_TLS', `TLS with KMIP server ${endpoint} failed: ${code}: the server certificate does not verify against the CA (${msg})`, { cause: err });
  }
  // OpenSSL messages carry internal file/line details after ':error:'; keep the readable part.
  const short = msg.split(/:error:|\n/)[0];
  return new KmipError('KMIP_TLS', `TLS with KMIP server ${endpoint} failed: ${code ? code + ': ' : ''}${short}`, { cause: err });
}

/** Node's codes for a server certificate that fails verification. */
const CERT_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_PURPOSE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export class KmipConnection {
  private pending:
    | { resolve: (b: Buffer) => void; reject: (e: KmipError) => void; timer: NodeJS.Timeout }
    | undefined;
  private chunks: Buffer[] = [];
  private received = 0;
  private expected = 0;
  private dead = false;

  private constructor(
    private readonly socket: tls.TLSSocket,
    private readonly endpoint: string,
    private readonly maxResponseBytes: number,
  ) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (e) => this.fail(classifySocketError(e, endpoint, 'call')));
    socket.on('close', () => this.fail(new KmipError('KMIP_TRANSPORT', `KMIP server ${endpoint} closed the connection`)));
  }

  static open(opts: KmipTlsOptions): Promise<KmipConnection> {
    const endpoint = `${opts.host}:${opts.port}`;
    return new Promise((resolve, reject) => {
      const servername = opts.servername ?? (net.isIP(opts.host) ? undefined : opts.host);
      const socket = tls.connect({
        host: opts.host,
        port: opts.port,
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        minVersion: 'TLSv1.2',
        rejectUnauthorized: true,
        ...(servername === undefined ? {} : { servername }),
        // For an IP endpoint Node checks the certificate's IP SANs against `host`.
      });
      let settled = false;
      const done = (err?: KmipError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.removeListener('error', onError);
        socket.removeListener('close', onClose);
        if (err) {
          socket.destroy();
          reject(err);
        } else {
          socket.setNoDelay(true);
          // Notice a server that vanished without a reset (idle pooled connections).
          socket.setKeepAlive(true, 30_000);
          resolve(new KmipConnection(socket, endpoint, opts.maxResponseBytes));
        }
      };
      const onError = (e: Error): void => done(classifySocketError(e, endpoint, 'connect'));
      const onClose = (): void => done(new KmipError('KMIP_TRANSPORT', `KMIP server ${endpoint} closed the connection during the TLS handshake`));
      const timer = setTimeout(
        () => done(new KmipError('KMIP_TIMEOUT', `KMIP server ${endpoint}: no TLS connection within ${opts.connectTimeoutMs} ms`)),
        opts.connectTimeoutMs,
      );
      socket.once('secureConnect', () => done());
      socket.on('error', onError);
      socket.on('close', onClose);
    });
  }

  /** False once the socket failed or closed; such a connection is never reused. */
  get usable(): boolean {
    return !this.dead;
  }

  /** Keeps an idle connection from holding the process open. */
  setIdle(idle: boolean): void {
    if (idle) this.socket.unref();
    else this.socket.ref();
  }

  /**
   * Sends one request and resolves with the complete response message bytes. `timeoutMs` is what
   * is left of the call's time; `configuredMs` is the timeout named in the error.
   */
  roundTrip(request: Buffer, timeoutMs: number, configuredMs = timeoutMs): Promise<Buffer> {
    if (this.dead) return Promise.reject(new KmipError('KMIP_TRANSPORT', `KMIP connection to ${this.endpoint} is closed`));
    if (this.pending) return Promise.reject(new KmipError('KMIP_PROTOCOL', 'KMIP connection already has a request in flight'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // The response may still arrive later: this connection can no longer be trusted for framing.
        this.fail(new KmipError('KMIP_TIMEOUT', `KMIP server ${this.endpoint}: no response within ${configuredMs} ms`));
      }, timeoutMs);
      this.pending = { resolve, reject, timer };
      this.chunks = [];
      this.received = 0;
      this.expected = 0;
      this.socket.write(request);
    });
  }

  destroy(): void {
    this.fail(new KmipError('KMIP_CLOSED', 'KMIP connection closed'));
  }

  private onData(d: Buffer): void {
    if (!this.pending) {
      this.fail(new KmipError('KMIP_PROTOCOL', `KMIP server ${this.endpoint} sent ${d.length} unsolicited bytes`));
      return;
    }
    this.chunks.push(d);
    this.received += d.length;
    try {
      if (this.expected === 0 && this.received >= 8) {
        const head = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
        this.expected = ttlvMessageSize(head.subarray(0, 8), this.maxResponseBytes);
      }
    } catch (e) {
      this.fail(e as KmipError);
      return;
    }
    if (this.expected === 0 || this.received < this.expected) return;
    if (this.received > this.expected) {
      this.fail(new KmipError('KMIP_PROTOCOL', `KMIP server ${this.endpoint} sent bytes beyond the response message`));
      return;
    }
    const p = this.pending;
    this.pending = undefined;
    clearTimeout(p.timer);
    const msg = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.received);
    this.chunks = [];
    p.resolve(msg);
  }

  private fail(err: KmipError): void {
    const p = this.pending;
    this.pending = undefined;
    if (!this.dead) {
      this.dead = true;
      this.socket.destroy();
    }
    if (p) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }
}
