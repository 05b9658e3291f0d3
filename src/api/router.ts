// URL paths → routes. Paths are split on `/` only (names may contain dots, kubectl.md §10).
import type { HealthEndpoint } from './health-endpoints.js';
import { API_GROUPS, resourceTypeOf, type ApiGroup, type GroupVersion, type ResourceType } from './resource-types.js';

/** Namespaced kinds kubectl asks about that we answer with empty lists (describe: events, quotas, limit ranges). */
const EMPTY_LISTS: Record<string, string> = { events: 'EventList', resourcequotas: 'ResourceQuotaList', limitranges: 'LimitRangeList' };

export type Route =
  | { kind: 'version' }
  | { kind: 'health'; endpoint: HealthEndpoint; check?: string }
  | { kind: 'metrics' }
  | { kind: 'api' }
  | { kind: 'apis' }
  | { kind: 'apiV1' }
  /** GET /apis/<group>: the APIGroup. */
  | { kind: 'apiGroup'; group: ApiGroup }
  /** GET /apis/<group>/<version>: its APIResourceList. */
  | { kind: 'apiGroupVersion'; groupVersion: GroupVersion }
  | { kind: 'openapi'; version: 'v2' | 'v3' }
  | { kind: 'emptyList'; listKind: string }
  /**
   * `name` absent: the collection (in `namespace`, or all namespaces when namespace is absent for a
   * namespaced kind). `subresource`: the object's status subresource (kinds that have one).
   */
  | { kind: 'resource'; rt: ResourceType; namespace?: string; name?: string; subresource?: 'status' }
  | { kind: 'notFound' };

/** Paths kube-apiserver serves to anonymous clients too (system:public-info-viewer). */
export function isPublicRoute(route: Route): boolean {
  return route.kind === 'version' || route.kind === 'health';
}

export function route(pathname: string): Route {
  const parts = pathname.split('/').filter((p) => p !== '').map((p) => decodeURIComponent(p));
  // A segment that decodes to a `/` (or is `.`/`..`) could reach another key's range: never a valid name.
  if (parts.some((p) => p.includes('/') || p === '.' || p === '..')) return { kind: 'notFound' };
  const [a, b, c, d, e, f] = parts;
  switch (a) {
    case 'version':
      return parts.length === 1 ? { kind: 'version' } : { kind: 'notFound' };
    case 'healthz':
    case 'livez':
    case 'readyz':
      if (parts.length === 1) return { kind: 'health', endpoint: a };
      if (parts.length === 2) return { kind: 'health', endpoint: a, check: b as string };
      return { kind: 'notFound' };
    case 'metrics':
      return parts.length === 1 ? { kind: 'metrics' } : { kind: 'notFound' };
    case 'openapi':
      if (parts.length === 2 && (b === 'v2' || b === 'v3')) return { kind: 'openapi', version: b };
      return { kind: 'notFound' };
    case 'apis':
      return parts.length === 1 ? { kind: 'apis' } : groupRoute(parts.slice(1));
    case 'api':
      break;
    default:
      return { kind: 'notFound' };
  }
  if (parts.length === 1) return { kind: 'api' };
  if (b !== 'v1') return { kind: 'notFound' };
  if (parts.length === 2) return { kind: 'apiV1' };
  if (c === 'namespaces') {
    const ns = resourceTypeOf('namespaces') as ResourceType;
    if (parts.length === 3) return { kind: 'resource', rt: ns };
    if (parts.length === 4) return { kind: 'resource', rt: ns, name: d as string };
    const sub = e as string;
    if (EMPTY_LISTS[sub] !== undefined && parts.length <= 6) return { kind: 'emptyList', listKind: EMPTY_LISTS[sub] as string };
    const rt = resourceTypeOf(sub);
    if (!rt || !rt.namespaced) return { kind: 'notFound' };
    if (parts.length === 5) return { kind: 'resource', rt, namespace: d as string };
    if (parts.length === 6) return { kind: 'resource', rt, namespace: d as string, name: f as string };
    return { kind: 'notFound' };
  }
  if (parts.length === 3) {
    if (EMPTY_LISTS[c as string] !== undefined) return { kind: 'emptyList', listKind: EMPTY_LISTS[c as string] as string };
    const rt = resourceTypeOf(c as string);
    if (rt && rt.namespaced) return { kind: 'resource', rt };
  }
  return { kind: 'notFound' };
}

/** Paths under /apis/<group>/<version>: cluster-scoped kinds only so far (StorageVersionMigration). */
function groupRoute(parts: string[]): Route {
  const [group, version, resource, name, sub] = parts;
  const apiGroup = API_GROUPS.find((g) => g.group === group);
  if (!apiGroup) return { kind: 'notFound' };
  if (parts.length === 1) return { kind: 'apiGroup', group: apiGroup };
  const groupVersion = apiGroup.versions.find((v) => v.version === version);
  if (!groupVersion) return { kind: 'notFound' };
  if (parts.length === 2) return { kind: 'apiGroupVersion', groupVersion };
  const rt = groupVersion.resources.find((r) => r.resource === resource);
  if (!rt || rt.namespaced || parts.length > 5) return { kind: 'notFound' };
  if (parts.length === 3) return { kind: 'resource', rt };
  if (parts.length === 4) return { kind: 'resource', rt, name: name as string };
  return sub === 'status' && rt.status ? { kind: 'resource', rt, name: name as string, subresource: 'status' } : { kind: 'notFound' };
}
