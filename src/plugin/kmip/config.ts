// Flags of `--backend kmip` and their validation. Credentials come only from files; the client key
// file must not be readable by group or others.
import { readFile, stat } from 'node:fs/promises';
import net from 'node:net';
import { BackendError, type BackendFlag, type BackendOptions } from '../backend.js';

export const kmipFlags: BackendFlag[] = [
  { flags: '--kmip-endpoint <host:port>', description: 'KMIP server address (TLS, usually port 5696)', env: 'ATREST_KMIP_ENDPOINT' },
  { flags: '--kmip-ca <file>', description: 'PEM CA certificate(s) the KMIP server certificate must chain to', env: 'ATREST_KMIP_CA' },
  { flags: '--kmip-cert <file>', description: 'PEM client certificate for mutual TLS', env: 'ATREST_KMIP_CERT' },
  { flags: '--kmip-key <file>', description: 'PEM private key of the client certificate (mode 0600 or stricter)', env: 'ATREST_KMIP_KEY' },
  { flags: '--kmip-key-name <name>', description: 'name of the key family on the KMIP server (versions are named <name>/v<n>)', env: 'ATREST_KMIP_KEY_NAME' },
  { flags: '--kmip-server-name <name>', description: 'name to check in the server certificate when it is not the endpoint host', env: 'ATREST_KMIP_SERVER_NAME' },
  {
    flags: '--kmip-cipher <auto|gcm|cbc>',
    description: 'server-side wrapping: gcm needs KMIP 1.4; auto picks gcm when the server speaks 1.4, else cbc',
    env: 'ATREST_KMIP_CIPHER',
    defaultValue: 'auto',
  },
  { flags: '--kmip-timeout-ms <ms>', description: 'timeout of one KMIP request attempt', env: 'ATREST_KMIP_TIMEOUT_MS', defaultValue: '5000' },
  { flags: '--kmip-connections <n>', description: 'TLS connections to the KMIP server kept open at most', env: 'ATREST_KMIP_CONNECTIONS', defaultValue: '4' },
];

export interface KmipSettings {
  host: string;
  port: number;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  servername?: string;
  keyName: string;
  cipher: 'auto' | 'gcm' | 'cbc';
  timeoutMs: number;
  connections: number;
}

const MAX_PEM_BYTES = 1 << 20;
/** Keeps `<name>/v<n>` and the key_id far below the KMS v2 limits. */
const MAX_KEY_NAME_BYTES = 200;

/** `--kmip-key-name <name>` → `kmipKeyName` (commander's option key). */
export function optionKey(flags: string): string {
  const long = /--([a-z0-9-]+)/.exec(flags)?.[1] ?? flags;
  return long.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function value(options: BackendOptions, flag: string): string | undefined {
  const v = options[optionKey(flag)];
  return v === undefined || v === '' ? undefined : v;
}

function required(options: BackendOptions, flag: string): string {
  const v = value(options, flag);
  if (v === undefined) throw new BackendError('CONFIG', `${flag} is required for --backend kmip`);
  return v;
}

async function readPem(flag: string, file: string, secret: boolean): Promise<Buffer> {
  let st;
  try {
    st = await stat(file);
  } catch (e) {
    throw new BackendError('CONFIG', `${flag} ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
  }
  if (!st.isFile()) throw new BackendError('CONFIG', `${flag} ${file}: not a regular file`);
  if (st.size > MAX_PEM_BYTES) throw new BackendError('CONFIG', `${flag} ${file}: larger than ${MAX_PEM_BYTES} bytes`);
  if (secret && (st.mode & 0o077) !== 0) {
    throw new BackendError('CONFIG', `${flag} ${file}: private key is readable by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
  }
  const data = await readFile(file).catch((e: unknown) => {
    throw new BackendError('CONFIG', `${flag} ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
  });
  if (!data.includes('-----BEGIN ')) throw new BackendError('CONFIG', `${flag} ${file}: not a PEM file`);
  return data;
}

function positiveInt(options: BackendOptions, flag: string, dflt: number, max: number): number {
  const v = value(options, flag);
  if (v === undefined) return dflt;
  if (!/^[0-9]+$/.test(v) || Number(v) < 1 || Number(v) > max) throw new BackendError('CONFIG', `${flag} must be an integer from 1 to ${max}, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** Parses `host:port`, `[v6]:port`. */
export function parseEndpoint(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:([0-9]{1,5})$/.exec(text) ?? /^([^:[\]]+):([0-9]{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535 || (text.startsWith('[') && net.isIPv6(m[1]!) === false)) {
    throw new BackendError('CONFIG', `--kmip-endpoint must be HOST:PORT, got ${JSON.stringify(text)}`);
  }
  return { host: m[1]!, port };
}

export function parseKeyName(name: string): string {
  if (Buffer.byteLength(name, 'utf8') > MAX_KEY_NAME_BYTES) throw new BackendError('CONFIG', `--kmip-key-name is longer than ${MAX_KEY_NAME_BYTES} bytes`);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
    throw new BackendError('CONFIG', `--kmip-key-name ${JSON.stringify(name)} may hold only letters, digits, '.', '_' and '-' (and start with a letter or digit)`);
  }
  return name;
}

export async function readKmipSettings(options: BackendOptions): Promise<KmipSettings> {
  const { host, port } = parseEndpoint(required(options, '--kmip-endpoint'));
  const keyName = parseKeyName(required(options, '--kmip-key-name'));
  const cipher = value(options, '--kmip-cipher') ?? 'auto';
  if (cipher !== 'auto' && cipher !== 'gcm' && cipher !== 'cbc') throw new BackendError('CONFIG', `--kmip-cipher must be auto, gcm or cbc, got ${JSON.stringify(cipher)}`);
  const caPath = required(options, '--kmip-ca');
  const certPath = required(options, '--kmip-cert');
  const keyPath = required(options, '--kmip-key');
  const [ca, cert, key] = await Promise.all([readPem('--kmip-ca', caPath, false), readPem('--kmip-cert', certPath, false), readPem('--kmip-key', keyPath, true)]);
  const servername = value(options, '--kmip-server-name');
  return {
    host,
    port,
    ca,
    cert,
    key,
    ...(servername === undefined ? {} : { servername }),
    keyName,
    cipher,
    timeoutMs: positiveInt(options, '--kmip-timeout-ms', 5000, 600_000),
    connections: positiveInt(options, '--kmip-connections', 4, 64),
  };
}
