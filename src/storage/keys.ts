// Storage keys as kube-apiserver lays them out (format.md §6): `<prefix>/<resource>/<namespace>/<name>`
// for namespaced objects and `<prefix>/<resource>/<name>` for cluster-scoped ones (namespaces,
// storageversionmigrations).
// The prefix (`--etcd-prefix`, default `/registry`) is normalised to start with `/` and have no
// trailing `/`. The full key string is the authenticated data of aesgcm, kms v1 and kms v2.
import { AtrestError } from '../errors.js';
import type { GroupResource } from '../config/types.js';

export const DEFAULT_ETCD_PREFIX = '/registry';

/** Cluster-scoped core resources whose keys have no namespace segment. */
const CLUSTER_SCOPED = new Set(['namespaces', 'nodes', 'persistentvolumes', 'clusterroles', 'clusterrolebindings', 'storageversionmigrations']);

/**
 * The API group of resources as kube-apiserver stores them: the etcd key holds only the resource
 * name, so the group comes from this table; anything not listed is taken as core ('').
 */
const GROUP_OF: Record<string, string> = {
  deployments: 'apps', statefulsets: 'apps', daemonsets: 'apps', replicasets: 'apps', controllerrevisions: 'apps',
  jobs: 'batch', cronjobs: 'batch',
  ingresses: 'networking.k8s.io', networkpolicies: 'networking.k8s.io',
  clusterroles: 'rbac.authorization.k8s.io', clusterrolebindings: 'rbac.authorization.k8s.io',
  roles: 'rbac.authorization.k8s.io', rolebindings: 'rbac.authorization.k8s.io',
  customresourcedefinitions: 'apiextensions.k8s.io',
  leases: 'coordination.k8s.io',
  storageversionmigrations: 'storagemigration.k8s.io',
};

export class StorageKeyError extends AtrestError {
  constructor(message: string) {
    super('STORAGE_KEY_INVALID', message);
  }
}

export function normalizePrefix(prefix: string): string {
  let p = prefix.trim();
  if (!p.startsWith('/')) p = '/' + p;
  while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p === '/' ? '' : p;
}

export function isClusterScoped(resource: string): boolean {
  return CLUSTER_SCOPED.has(resource);
}

/** The storage key of an object. `namespace` is ignored for cluster-scoped resources. */
export function storageKey(prefix: string, resource: string, namespace: string | undefined, name: string): string {
  const p = normalizePrefix(prefix);
  return isClusterScoped(resource) || namespace === undefined ? `${p}/${resource}/${name}` : `${p}/${resource}/${namespace}/${name}`;
}

/** The key prefix listing every object of a resource (optionally one namespace), ending in `/`. */
export function storagePrefix(prefix: string, resource: string, namespace?: string): string {
  const p = normalizePrefix(prefix);
  return namespace === undefined || isClusterScoped(resource) ? `${p}/${resource}/` : `${p}/${resource}/${namespace}/`;
}

export interface ParsedStorageKey {
  groupResource: GroupResource;
  namespace?: string;
  name: string;
}

/** Splits a full storage key under `prefix`; throws StorageKeyError naming the key when it does not fit. */
export function parseStorageKey(prefix: string, key: string): ParsedStorageKey {
  const p = normalizePrefix(prefix);
  if (!key.startsWith(p + '/')) {
    throw new StorageKeyError(`storage key ${JSON.stringify(key)} is not under the etcd prefix ${JSON.stringify(p || '/')}`);
  }
  const parts = key.slice(p.length + 1).split('/');
  const resource = parts[0] ?? '';
  const groupResource = { group: GROUP_OF[resource] ?? '', resource };
  if (resource !== '' && isClusterScoped(resource) && parts.length === 2 && parts[1]) {
    return { groupResource, name: parts[1] };
  }
  if (resource !== '' && !isClusterScoped(resource) && parts.length === 3 && parts[1] && parts[2]) {
    return { groupResource, namespace: parts[1], name: parts[2] };
  }
  throw new StorageKeyError(
    `storage key ${JSON.stringify(key)} does not look like ${p}/<resource>/<namespace>/<name> or ${p}/namespaces/<name>`,
  );
}
