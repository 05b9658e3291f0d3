// kms.endpoint → the UNIX socket to dial (format.md §2.3; k8s.io/kms `util.ParseEndpoint`):
// `unix:///var/run/kms.sock` dials `/var/run/kms.sock`; `unix:///@name` dials the Linux abstract
// socket `@name` (NUL + name); any other scheme is refused with kube-apiserver's text.
import { KmsEndpointError } from './errors.js';

export interface UnixEndpoint {
  /** What kube-apiserver dials: a filesystem path, or `@name` for an abstract socket. */
  address: string;
  abstract: boolean;
  /** The @grpc/grpc-js target for it. */
  grpcTarget: string;
  /** Why this address may be unreachable from this Node.js build, if it may be. */
  caveat?: string;
}

/**
 * Node.js 20 (libuv 1.46) pads abstract socket addresses to the full 108-byte sun_path on connect
 * (nodejs/node#50889, fixed in libuv 1.47), so it reaches a Go or Python plugin's abstract socket
 * only when the name fills sun_path (107 bytes); peers that are Node.js processes pad the same way.
 */
function abstractCaveat(name: string): string | undefined {
  const [major = 0, minor = 0] = (process.versions.uv ?? '0.0').split('.').map(Number);
  const padded = major === 1 && minor < 47;
  if (!padded || Buffer.byteLength(name) === 107) return undefined;
  return `libuv ${process.versions.uv} pads abstract socket addresses (nodejs/node#50889): ` +
    `"@${name}" is reachable only if the plugin pads too (a Node.js plugin) or the name is 107 bytes long; prefer a filesystem socket`;
}

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;

export function parseKmsEndpoint(endpoint: string): UnixEndpoint {
  if (endpoint.length === 0) throw new KmsEndpointError("remote KMS provider can't use empty string as endpoint");
  const scheme = SCHEME.exec(endpoint)?.[1]?.toLowerCase() ?? '';
  if (scheme !== 'unix') throw new KmsEndpointError(`unsupported scheme "${scheme}" for remote KMS provider`);
  let url: URL;
  let path: string;
  try {
    url = new URL(endpoint);
    // Go's URL.Path is the decoded path; an opaque `unix:x` has none.
    path = url.pathname.startsWith('/') ? decodeURIComponent(url.pathname) : '';
  } catch (err) {
    throw new KmsEndpointError(`invalid endpoint "${endpoint}" for remote KMS provider, error: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (path.startsWith('/@')) {
    const address = path.slice(1);
    if (address.length < 2) throw new KmsEndpointError(`invalid endpoint "${endpoint}" for remote KMS provider, error: empty abstract socket name`);
    // grpc-js hands the path to net.connect, where a leading NUL selects the abstract namespace.
    const caveat = abstractCaveat(address.slice(1));
    return { address, abstract: true, grpcTarget: `unix:\0${address.slice(1)}`, ...(caveat ? { caveat } : {}) };
  }
  if (path.length === 0) {
    // Go would dial "" and fail on every call; refuse it up front with a clear reason.
    throw new KmsEndpointError(`invalid endpoint "${endpoint}" for remote KMS provider, error: no socket path (use unix:///path/to/socket)`);
  }
  return { address: path, abstract: false, grpcTarget: `unix:${path}` };
}
