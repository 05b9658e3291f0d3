// Discovery: legacy (/api APIVersions, /apis APIGroupList, /api/v1 APIResourceList) and, when the
// Accept asks for it, aggregated discovery (apidiscovery.k8s.io/v2 APIGroupDiscoveryList, with its
// exact Content-Type: kubectl parses anything else as legacy; kubectl.md §0.6, §3.2).
import { RESOURCE_TYPES } from './resource-types.js';

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

export function apiGroupList(): unknown {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: [] };
}

export function apiResourceList(): unknown {
  return {
    kind: 'APIResourceList',
    groupVersion: 'v1',
    resources: Object.values(RESOURCE_TYPES).map((rt) => ({
      name: rt.resource,
      singularName: rt.singular,
      namespaced: rt.namespaced,
      kind: rt.kind,
      verbs: rt.verbs,
      ...(rt.shortNames.length ? { shortNames: rt.shortNames } : {}),
    })),
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
            resources: Object.values(RESOURCE_TYPES).map((rt) => ({
              resource: rt.resource,
              responseKind: { group: '', version: 'v1', kind: rt.kind },
              scope: rt.namespaced ? 'Namespaced' : 'Cluster',
              singularResource: rt.singular,
              verbs: rt.verbs,
              ...(rt.shortNames.length ? { shortNames: rt.shortNames } : {}),
            })),
          },
        ],
      },
    ],
  };
}

export function aggregatedGroups(): unknown {
  return { kind: 'APIGroupDiscoveryList', apiVersion: 'apidiscovery.k8s.io/v2', metadata: {}, items: [] };
}
