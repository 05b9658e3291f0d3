// Discovery: legacy (/api APIVersions, /apis APIGroupList, /apis/<group> APIGroup, /api/v1 and
// /apis/<group>/<version> APIResourceList) and, when the Accept asks for it, aggregated discovery
// (apidiscovery.k8s.io/v2 APIGroupDiscoveryList, with its exact Content-Type: kubectl parses anything
// else as legacy; kubectl.md §0.6, §3.2). Core kinds under /api, the named groups under /apis.
import { API_GROUPS, CORE_RESOURCE_TYPES, type ApiGroup, type GroupVersion, type ResourceType } from './resource-types.js';

/** The verbs of a status subresource (kube: get, patch, update). */
const STATUS_VERBS = ['get', 'patch', 'update'];

function groupVersionOf(gv: Pick<GroupVersion, 'group' | 'version'>): { groupVersion: string; version: string } {
  return { groupVersion: gv.group ? `${gv.group}/${gv.version}` : gv.version, version: gv.version };
}

export const AGGREGATED_CONTENT_TYPE = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList';

/** True when one of the Accept alternatives is the v2 aggregated discovery list. */
export function wantsAggregated(accept: string | undefined): boolean {
  return (accept ?? '').split(',').some((alt) => {
    const params = new Map(alt.split(';').slice(1).map((p) => p.trim().split('=') as [string, string]));
    return params.get('g') === 'apidiscovery.k8s.io' && params.get('v') === 'v2' && params.get('as') === 'APIGroupDiscoveryList';
  });
}

export function legacyApiVersions(serverAddress: string): unknown {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
}

function apiGroup(g: ApiGroup): Record<string, unknown> {
  const versions = g.versions.map(groupVersionOf);
  return { name: g.group, versions, preferredVersion: versions[0] };
}

export function apiGroupList(): unknown {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: API_GROUPS.map(apiGroup) };
}

/** GET /apis/<group> (the router found the served group). */
export function apiGroupOf(g: ApiGroup): unknown {
  return { kind: 'APIGroup', apiVersion: 'v1', ...apiGroup(g) };
}

function legacyResources(rt: ResourceType): unknown[] {
  const main = {
    name: rt.resource,
    singularName: rt.singular,
    namespaced: rt.namespaced,
    kind: rt.kind,
    verbs: rt.verbs,
    ...(rt.shortNames.length ? { shortNames: rt.shortNames } : {}),
  };
  // A subresource is its own entry, `<resource>/<subresource>`, as kube lists it.
  return rt.status ? [main, { name: `${rt.resource}/status`, singularName: '', namespaced: rt.namespaced, kind: rt.kind, verbs: STATUS_VERBS }] : [main];
}

/** GET /api/v1 (no argument) or GET /apis/<group>/<version>. */
export function apiResourceList(gv?: GroupVersion): unknown {
  const resources = gv ? gv.resources : Object.values(CORE_RESOURCE_TYPES);
  return {
    kind: 'APIResourceList',
    ...(gv ? { apiVersion: 'v1' } : {}),
    groupVersion: gv ? groupVersionOf(gv).groupVersion : 'v1',
    resources: resources.flatMap(legacyResources),
  };
}

function aggregatedResource(rt: ResourceType): unknown {
  const responseKind = { group: rt.group, version: rt.version, kind: rt.kind };
  return {
    resource: rt.resource,
    responseKind,
    scope: rt.namespaced ? 'Namespaced' : 'Cluster',
    singularResource: rt.singular,
    verbs: rt.verbs,
    ...(rt.shortNames.length ? { shortNames: rt.shortNames } : {}),
    ...(rt.status ? { subresources: [{ subresource: 'status', responseKind, verbs: STATUS_VERBS }] } : {}),
  };
}

export function aggregatedCore(): unknown {
  return {
    kind: 'APIGroupDiscoveryList',
    apiVersion: 'apidiscovery.k8s.io/v2',
    metadata: {},
    items: [
      {
        metadata: { creationTimestamp: null },
        versions: [
          {
            version: 'v1',
            freshness: 'Current',
            resources: Object.values(CORE_RESOURCE_TYPES).map(aggregatedResource),
          },
        ],
      },
    ],
  };
}

export function aggregatedGroups(): unknown {
  return {
    kind: 'APIGroupDiscoveryList',
    apiVersion: 'apidiscovery.k8s.io/v2',
    metadata: {},
    items: API_GROUPS.map((g) => ({
      metadata: { name: g.group, creationTimestamp: null },
      versions: g.versions.map((gv) => ({ version: gv.version, freshness: 'Current', resources: gv.resources.map(aggregatedResource) })),
    })),
  };
}
