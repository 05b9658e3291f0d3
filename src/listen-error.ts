// Why a TCP listen failed, in an operator's words and with the flag that changes it (issue #20 §3):
// `atrest serve --secure-port`/`--bind-address`, `atrest dev`, the plugin's `--health-listen`. Leaf
// module like errors.ts: imports nothing of ours but it, so every process kind may use it.
import { messageOf } from './errors.js';

export interface ListenFlags {
  /** The flag that picks the port, e.g. `--secure-port`. */
  port: string;
  /** The flag that picks the address (may be the same flag, e.g. `--health-listen host:port`). */
  address: string;
}

/** `cannot listen on <address>: <why>; <what to do with which flag>`. */
export function describeListenError(err: unknown, address: string, flags: ListenFlags): string {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'EADDRINUSE':
      return `cannot listen on ${address}: the port is already in use (EADDRINUSE), by another atrest or another program; stop that process, or choose another port with ${flags.port}`;
    case 'EACCES':
      return `cannot listen on ${address}: permission denied (EACCES); ports below 1024 need root or CAP_NET_BIND_SERVICE: choose a port from 1024 up with ${flags.port}`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${address}: no network interface of this machine has that address (EADDRNOTAVAIL); give one it has with ${flags.address}`;
    default:
      return `cannot listen on ${address}: ${messageOf(err)}`;
  }
}
