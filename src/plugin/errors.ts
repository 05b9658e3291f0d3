// Typed errors of the KMS plugin server (the backends raise BackendError from ./backend.ts).
// Messages name the socket, file or flag at fault and never hold key material.
import { AtrestError } from '../errors.js';

export type PluginErrorCode =
  /** --listen is not a `unix:///path` or `unix:///@name` endpoint. */
  | 'PLUGIN_LISTEN_INVALID'
  /** Another process answers on the socket (or the abstract name is bound). */
  | 'PLUGIN_SOCKET_IN_USE'
  /** The socket path exists and is not a socket, or cannot be bound/prepared. */
  | 'PLUGIN_SOCKET_FAILED'
  /** --health-listen is not `host:port`, or its port cannot be bound. */
  | 'PLUGIN_HEALTH_LISTEN_INVALID'
  /** A server option is out of range. */
  | 'PLUGIN_CONFIG'
  /** A client's HTTP/2 bytes could not be parsed by the connection edge (bad HPACK, frame order). */
  | 'PLUGIN_HTTP2_MALFORMED';

export class PluginError extends AtrestError {
  constructor(code: PluginErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
