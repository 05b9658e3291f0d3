// Namespace lifecycle: the bootstrap namespaces every cluster has, the check that a namespace
// exists (and is not terminating) before objects are created in it, and deletion of a namespace
// with everything in it. Deletion is synchronous (kubectl.md §0.8): the namespace is marked
// Terminating, its contents are deleted, then the namespace itself.
import { randomUUID } from 'node:crypto';
import { isStoreError } from '../storage/errors.js';
import { CorruptObjects, corruptListMessage } from './corrupt-objects.js';
import { conflict, forbidden, notFound } from './errors.js';
import type { NamespaceLookup } from './namespace-cache.js';
import type { ObjectRepository } from './object-repository.js';
import { rfc3339Seconds, type KubeObject } from './objects.js';
import { RESOURCE_TYPES, namespaces, type ResourceType } from './resource-types.js';

export const BOOTSTRAP_NAMESPACES = ['default', 'kube-system', 'kube-public'];

/** Namespaces kube-apiserver refuses to delete. */
export const UNDELETABLE_NAMESPACES = new Set(['default', 'kube-system', 'kube-public']);

export function newNamespace(name: string, nowMs: number): KubeObject {
  const obj: KubeObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name, uid: randomUUID(), creationTimestamp: rfc3339Seconds(nowMs) } };
  namespaces.normalize(obj);
  return obj;
}

/** Creates the bootstrap namespaces that do not exist yet. */
export async function bootstrapNamespaces(repo: ObjectRepository, nowMs: number): Promise<string[]> {
  const created: string[] = [];
  for (const name of BOOTSTRAP_NAMESPACES) {
    if (await repo.get(namespaces, undefined, name)) continue;
    try {
      await repo.create(namespaces, newNamespace(name, nowMs));
      created.push(name);
    } catch (err) {
      if (!isStoreError(err, 'KEY_EXISTS')) throw err;
    }
  }
  return created;
}

/** 404 when the namespace does not exist, 403 when it is being deleted; else the namespace's revision. */
export async function assertNamespaceWritable(repo: ObjectRepository, namespace: string): Promise<number> {
  const ns = await repo.get(namespaces, undefined, namespace);
  if (!ns) throw notFound('namespaces', namespace);
  if (ns.obj.metadata.deletionTimestamp) throw terminating(namespace);
  return ns.revision;
}

function terminating(namespace: string) {
  return forbidden('namespaces', namespace, `unable to create new content in namespace ${namespace} because it is being terminated`);
}

/** How often a create goes again when its namespace keeps changing under it (then 409 Conflict). */
const GUARDED_CREATE_ATTEMPTS = 4;

/**
 * Creates a namespaced object only in a namespace that exists and is not Terminating. The create is
 * one transaction guarded by the namespace revision the check saw (from the namespace cache, or
 * from a live read), so a namespace deleted or marked Terminating between the check and the create
 * (the create waited for its encryption, say) never gets new content: when that revision moved,
 * the namespace is read live and the create answers (404, 403) or goes again. See
 * namespace-cache.ts for the race bound. A store that cannot guard creates gets the plain create
 * after the check. The caller already checked with `checkNamespace` (dry runs stop there).
 */
export async function createInNamespace(repo: ObjectRepository, rt: ResourceType, obj: KubeObject, checkedRevision: number): Promise<KubeObject> {
  const namespace = obj.metadata.namespace ?? '';
  // A cache is only built where creates can be guarded (index.ts): without the guard it would widen the race.
  if (!repo.canGuardCreates) return repo.create(rt, obj);
  let revision = checkedRevision;
  for (let attempt = 1; ; attempt++) {
    try {
      return await repo.createGuarded(rt, obj, repo.key(namespaces, undefined, namespace), revision);
    } catch (err) {
      if (!isStoreError(err, 'GUARD_CHANGED')) throw err;
      if (attempt >= GUARDED_CREATE_ATTEMPTS) throw conflict('namespaces', namespace);
      revision = await assertNamespaceWritable(repo, namespace);
    }
  }
}

/** The namespace check of a create: from the cache when it knows an Active namespace, else a live read. Returns the revision seen. */
export async function checkNamespace(repo: ObjectRepository, cache: NamespaceLookup | undefined, namespace: string): Promise<number> {
  const cached = cache?.get(namespace);
  // A Terminating namespace in the cache is confirmed live (it may have been recreated since).
  if (cached && !cached.terminating) return cached.revision;
  return assertNamespaceWritable(repo, namespace);
}

/** Namespaced kinds whose objects go with their namespace. */
function namespacedTypes(): ResourceType[] {
  return Object.values(RESOURCE_TYPES).filter((rt) => rt.namespaced);
}

/** The corrupt objects (KEP-3926) that kept a namespace's contents from being deleted, per resource. */
export interface NamespaceContentCorruption {
  /** Only resources with corrupt objects are present: empty when nothing blocked the deletion. */
  byResource: Map<string, CorruptObjects>;
}

/**
 * Deletes every namespaced object in `namespace` (page by page). A value that does not decrypt or
 * decode is not deleted (that needs the unsafe delete, an operator's decision): it is skipped and
 * reported, and the other objects are still deleted, as kube's namespace controller does.
 */
export async function deleteNamespaceContents(repo: ObjectRepository, namespace: string): Promise<{ deleted: number; corrupt: NamespaceContentCorruption }> {
  let deleted = 0;
  const corrupt: NamespaceContentCorruption = { byResource: new Map() };
  for (const rt of namespacedTypes()) {
    // Deleted objects leave the range, corrupt ones stay: read on after the last key seen.
    let after: string | undefined;
    for (;;) {
      const page = await repo.list(rt, namespace, { limit: 500, collectCorrupt: true, ...(after !== undefined ? { after } : {}) });
      for (const item of page.items) {
        if ((await repo.delete(rt, namespace, item.obj.metadata.name ?? '')) !== undefined) deleted++;
      }
      for (const c of page.corrupt) {
        let found = corrupt.byResource.get(rt.resource);
        if (!found) corrupt.byResource.set(rt.resource, (found = new CorruptObjects()));
        found.add(c);
      }
      if (!page.more || page.lastKey === undefined) break;
      after = page.lastKey;
    }
  }
  return { deleted, corrupt };
}

/** Whether anything is still stored in `namespace`: one key read per namespaced kind, whatever the namespace holds. */
export async function namespaceHasContent(repo: ObjectRepository, namespace: string): Promise<boolean> {
  for (const rt of namespacedTypes()) if (await repo.anyStored(rt, namespace)) return true;
  return false;
}

type NamespaceCondition = { type: string; status: 'True' | 'False'; lastTransitionTime: string; reason: string; message: string };

/**
 * kube's namespace-deleter conditions (pkg/controller/namespace/deletion/status_condition_utils.go)
 * for a deletion that corrupt objects block: NamespaceDeletionContentFailure and
 * NamespaceContentRemaining true, naming the keys; the others in their "ok" form.
 */
export function namespaceDeletionConditions(corrupt: NamespaceContentCorruption, now: string): { conditions: NamespaceCondition[]; message: string } {
  const errors = [...corrupt.byResource.entries()].map(([resource, found]) => corruptListMessage(resource, found)).sort();
  const message = `Failed to delete all resource types, ${errors.length} remaining: ${errors.join(', ')}`;
  const remaining = [...corrupt.byResource.entries()].map(([resource, found]) => `${resource}. has ${found.size}${found.truncated ? '+' : ''} resource instances`).sort();
  const c = (type: string, status: 'True' | 'False', reason: string, msg: string): NamespaceCondition => ({ type, status, lastTransitionTime: now, reason, message: msg });
  return {
    message,
    conditions: [
      c('NamespaceDeletionDiscoveryFailure', 'False', 'ResourcesDiscovered', 'All resources successfully discovered'),
      c('NamespaceDeletionGroupVersionParsingFailure', 'False', 'ParsedGroupVersions', 'All legacy kube types successfully parsed'),
      c('NamespaceDeletionContentFailure', 'True', 'ContentDeletionFailed', message),
      c('NamespaceContentRemaining', 'True', 'SomeResourcesRemain', `Some resources are remaining: ${remaining.join(', ')}`),
      c('NamespaceFinalizersRemaining', 'False', 'ContentHasNoFinalizers', 'All content-preserving finalizers finished'),
    ],
  };
}
