// Opens the store the way every command names it: `--etcd-servers` (comma-separated client URLs,
// kube's flag) for etcd, otherwise the embedded store `<data-dir>/store.db`. Shared by `serve`,
// `get-raw`, `verify`, `rewrite` and `decrypt`. Each backend module (etcd3, better-sqlite3) is
// loaded only when a store of its kind is opened.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_DATA_DIR, STORE_FILE_NAME } from './defaults.js';
import { StoreError } from './errors.js';
import type { EtcdStoreOptions, EtcdTlsOptions } from './etcd.js';
import type { SqliteStoreOptions } from './sqlite.js';
import type { Store } from './types.js';

export { DEFAULT_DATA_DIR } from './defaults.js';

export interface StoreLocation {
  /** `--etcd-servers`: a comma-separated list or an array of client URLs. Wins over dataDir. */
  etcdServers?: string | string[];
  /** `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile` (PEM files). */
  etcdCaFile?: string;
  etcdCertFile?: string;
  etcdKeyFile?: string;
  /** `--data-dir` of the embedded store (default ./.atrest). */
  dataDir?: string;
  /** Embedded store only: open read-only, for tools that look while a server runs (the file must exist). */
  readonly?: boolean;
  /** Embedded store only: further options (compaction, fsync, logger). */
  sqlite?: SqliteStoreOptions;
  /** etcd only: request timeouts and the like (endpoints and TLS come from the fields above). */
  etcd?: Omit<EtcdStoreOptions, 'endpoints' | 'tls'>;
}

export function splitEtcdServers(servers: string | string[]): string[] {
  const list = Array.isArray(servers) ? servers : servers.split(',');
  return list.map((s) => s.trim()).filter((s) => s !== '');
}

export function embeddedStoreFile(dataDir?: string): string {
  return join(dataDir || DEFAULT_DATA_DIR, STORE_FILE_NAME);
}

/** A human-readable name of where the store is, for messages (never credentials). */
export function describeStoreLocation(loc: StoreLocation): string {
  const servers = loc.etcdServers === undefined ? [] : splitEtcdServers(loc.etcdServers);
  return servers.length > 0 ? `etcd ${servers.join(',')}` : `embedded store ${embeddedStoreFile(loc.dataDir)}`;
}

export async function openStore(loc: StoreLocation): Promise<Store> {
  const servers = loc.etcdServers === undefined ? [] : splitEtcdServers(loc.etcdServers);
  if (servers.length > 0) {
    let tls: EtcdTlsOptions | undefined;
    if (loc.etcdCaFile || loc.etcdCertFile || loc.etcdKeyFile) {
      if (Boolean(loc.etcdCertFile) !== Boolean(loc.etcdKeyFile)) {
        throw new StoreError('UNAVAILABLE', '--etcd-certfile and --etcd-keyfile must be given together');
      }
      tls = {
        ...(loc.etcdCaFile ? { ca: readFileSync(loc.etcdCaFile) } : {}),
        ...(loc.etcdCertFile ? { cert: readFileSync(loc.etcdCertFile) } : {}),
        ...(loc.etcdKeyFile ? { key: readFileSync(loc.etcdKeyFile) } : {}),
      };
    }
    const { openEtcdStore } = await import('./etcd.js');
    return openEtcdStore({ ...loc.etcd, endpoints: servers, ...(tls ? { tls } : {}) });
  }
  const { openSqliteStore } = await import('./sqlite.js');
  return openSqliteStore(embeddedStoreFile(loc.dataDir), { ...loc.sqlite, ...(loc.readonly ? { readonly: true } : {}) });
}
