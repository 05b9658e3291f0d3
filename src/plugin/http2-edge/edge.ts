// The plugin's HTTP/2 edge: every accepted UNIX connection passes here before grpc-js sees it.
//
// Node's HTTP/2 server (nghttp2) resets every request whose :authority it refuses (authority.ts),
// and kube-apiserver 1.27/1.28 send the socket path there. To keep nghttp2's native read path for
// the clients that need nothing (a JS stream in between costs a measurable share of a call, see
// docs/ARCHITECTURE.md), the edge looks before it hands a connection over:
//
// 1. It writes an empty SETTINGS frame at once: grpc-go sends no request before the server's
//    preface, so without one there would be nothing to look at.
// 2. It holds the client's bytes (preface, frames) until the first complete request header block
//    and the ACK of that SETTINGS have both arrived (ClientStream in hold mode).
// 3. If the authority is acceptable: the held bytes, less that ACK (nghttp2 did not send those
//    SETTINGS and would reject an ACK it did not expect), are put back into the socket
//    (socket.unshift: Node's Http2Session, once it has taken the socket's native handle, feeds what
//    is buffered on the socket to nghttp2 on the next tick, before any later read) and the native
//    socket goes to grpc-js: from then on the edge costs nothing.
//    If it must be repaired: the connection goes to grpc-js wrapped in a RepairingConnection,
//    which rewrites every header block from then on.
// 4. Anything else decides too: a client that sends nothing for holdTimeoutMs (an idle channel, a
//    client that only pings) or more than 64 KiB before a verdict is repaired, which serves any
//    authority; bytes that are not HTTP/2 (or are malformed) go to nghttp2 as they came, and it
//    answers them as it always did. A held connection costs at most those 64 KiB and a timer.
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { messageOf } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { AuthorityProblem, AuthorityRepair } from './authority.js';
import { REPLACEMENT_AUTHORITY } from './authority.js';
import { ClientStream, type Verdict } from './client-stream.js';
import { EMPTY_SETTINGS_FRAME } from './frames.js';
import { RepairingConnection } from './repairing-connection.js';

export interface Http2EdgeOptions {
  /** Hands a connection to the HTTP/2 server (grpc-js's connection injector). */
  inject: (connection: Duplex) => void;
  log: Logger;
  /** Called once per connection whose authority was repaired (the metric). */
  onRepaired?: () => void;
  /** How long a connection may be held without a verdict before it is repaired (default 5000 ms). */
  holdTimeoutMs?: number;
}

const PROBLEM_TEXT: Record<AuthorityProblem, string> = {
  'absent': 'is absent',
  'empty': 'is empty',
  'invalid-characters': 'holds characters it refuses (a socket path, as kube-apiserver 1.27/1.28 send)',
};

/** Longest authority shown in the log line (a socket path is at most 108 bytes). */
const MAX_LOGGED_AUTHORITY = 256;

export class Http2Edge {
  private readonly holding = new Set<net.Socket>();
  private closed = false;
  private connections = 0;

  constructor(private readonly options: Http2EdgeOptions) {}

  /** Connections still held (no verdict yet). */
  get held(): number {
    return this.holding.size;
  }

  accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const connection = ++this.connections;
    const stream = new ClientStream({ onFirstRepair: (repair) => this.repaired(connection, repair) });
    const release = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.off('close', release);
      this.holding.delete(socket);
    };
    const handOver = (verdict: Exclude<Verdict, 'wait'>): void => {
      release();
      if (this.closed) {
        socket.destroy();
        return;
      }
      if (verdict === 'native') {
        socket.pause();
        const held = stream.nativeBytes();
        if (held.length > 0) socket.unshift(held);
        this.options.inject(socket);
        return;
      }
      const onMalformed = (err: unknown): void => {
        this.options.log.warn({ event: 'http2-malformed', connection, err: messageOf(err) }, 'closing a connection whose HTTP/2 the plugin cannot parse');
      };
      this.options.inject(new RepairingConnection(socket, stream, stream.startRepair(), onMalformed));
    };
    const onData = (chunk: Buffer): void => {
      let verdict: Verdict;
      try {
        stream.feed(chunk);
        verdict = stream.verdict();
      } catch (err) {
        // Not a verdict on the client (hold mode answers malformed input with `native`): a bug here
        // must cost this connection only.
        this.options.log.error({ event: 'http2-edge-failed', connection, err: messageOf(err) }, 'the HTTP/2 edge failed on a connection; closing it');
        onError();
        return;
      }
      if (verdict !== 'wait') handOver(verdict);
    };
    // Half-closed before any verdict: no HTTP/2 client does that; nothing can be answered.
    const onEnd = (): void => {
      release();
      socket.destroy();
    };
    const onError = (): void => {
      release();
      socket.destroy();
    };
    const timer = setTimeout(() => handOver('repair'), this.options.holdTimeoutMs ?? 5000);
    timer.unref();
    this.holding.add(socket);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
    socket.once('close', release);
    socket.write(EMPTY_SETTINGS_FRAME);
  }

  /** Refuses new connections and closes the held ones (connections handed over are grpc-js's). */
  close(): void {
    this.closed = true;
    for (const socket of this.holding) socket.destroy();
    this.holding.clear();
  }

  private repaired(connection: number, repair: AuthorityRepair): void {
    this.options.onRepaired?.();
    const original = repair.original === undefined ? undefined
      : repair.original.length > MAX_LOGGED_AUTHORITY ? `${repair.original.slice(0, MAX_LOGGED_AUTHORITY)}…` : repair.original;
    this.options.log.info({ event: 'authority-repaired', connection, problem: repair.problem, authority: original, replacement: REPLACEMENT_AUTHORITY },
      `the client's HTTP/2 :authority ${PROBLEM_TEXT[repair.problem]}, so Node's HTTP/2 would reset every call: rewriting it to ${REPLACEMENT_AUTHORITY} on this connection`);
  }
}
