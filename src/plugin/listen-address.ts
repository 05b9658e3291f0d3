// The plugin's --listen endpoint, in kube-apiserver's `kms.endpoint` syntax (format.md §2.3):
// `unix:///var/run/kms.sock` is the filesystem socket `/var/run/kms.sock`, `unix:///@name` is the
// Linux abstract socket `@name` (NUL + name). Anything else is refused, naming the value.
import { PluginError } from './errors.js';

export interface ListenAddress {
  /** The endpoint as given, for logs. */
  endpoint: string;
  /** Filesystem path, or the abstract name without its `@`. */
  path: string;
  abstract: boolean;
  /** What net.Server.listen / net.connect take: the path, or NUL + name for an abstract socket. */
  netPath: string;
}

/** sun_path is 108 bytes on Linux, one of them the terminating (or, for abstract names, leading) NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

export function parseListenAddress(endpoint: string): ListenAddress {
  const bad = (why: string): PluginError =>
    new PluginError('PLUGIN_LISTEN_INVALID', `--listen ${JSON.stringify(endpoint)}: ${why} (use unix:///path/to/kms.sock or unix:///@name)`);
  if (!endpoint.toLowerCase().startsWith('unix://')) throw bad('the scheme must be unix');
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw bad('not a URL');
  }
  if (url.host !== '') throw bad(`unexpected host part "${url.host}"`);
  if (url.search !== '' || url.hash !== '') throw bad('unexpected query or fragment');
  const path = decodeURIComponent(url.pathname);
  if (path.includes('\0')) throw bad('the path contains a NUL byte');
  if (path.startsWith('/@')) {
    const name = path.slice(2);
    if (name.length === 0) throw bad('empty abstract socket name');
    if (Buffer.byteLength(name) > MAX_SOCKET_PATH_BYTES) throw bad(`abstract name longer than ${MAX_SOCKET_PATH_BYTES} bytes`);
    return { endpoint, path: name, abstract: true, netPath: `\0${name}` };
  }
  if (path === '/' || path.endsWith('/')) throw bad('no socket file name');
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) throw bad(`socket path longer than ${MAX_SOCKET_PATH_BYTES} bytes`);
  return { endpoint, path, abstract: false, netPath: path };
}
