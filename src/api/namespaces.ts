// Namespace lifecycle: the bootstrap namespaces every cluster has, the check that a namespace
// exists (and is not terminating) before objects are created in it, and deletion of a namespace
// with everything in it. Deletion is synchronous (kubectl.md §0.8): the namespace is marked
// Terminating, its contents are deleted, then the namespace itself.
import { randomUUID } from 'node:crypto';
import { isStoreError } from '../storage/errors.js';
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
 * Creates a namespaced object only in a namespace that exists and is not Terminating. With a
 * namespace cache (etcd: see namespace-cache.ts for the race bound) the check costs no round trip
 * and the create is one transaction guarded by the namespace revision the check saw; when that
 * revision moved, the namespace is read live and the create answers or goes again. Without one, a
 * live read and then the create (the embedded store). The caller already checked with
 * `checkNamespace` (dry runs stop there).
 */
export async function createInNamespace(repo: ObjectRepository, cache: NamespaceLookup | undefined, rt: ResourceType, obj: KubeObject, checkedRevision: number): Promise<KubeObject> {
  const namespace = obj.metadata.namespace ?? '';
  if (!cache || !repo.canGuardCreates) return repo.create(rt, obj);
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
  const cached = cache && repo.canGuardCreates ? cache.get(namespace) : undefined;
  // A Terminating namespace in the cache is confirmed live (it may have been recreated since).
  if (cached && !cached.terminating) return cached.revision;
  return assertNamespaceWritable(repo, namespace);
}

/** Namespaced kinds whose objects go with their namespace. */
function namespacedTypes(): ResourceType[] {
  return Object.values(RESOURCE_TYPES).filter((rt) => rt.namespaced);
}

/** Deletes every namespaced object in `namespace` (page by page). */
export async function deleteNamespaceContents(repo: ObjectRepository, namespace: string): Promise<number> {
  let deleted = 0;
  for (const rt of namespacedTypes()) {
    for (;;) {
      const page = await repo.list(rt, namespace, { limit: 500 });
      for (const item of page.items) {
        if ((await repo.delete(rt, namespace, item.obj.metadata.name ?? '')) !== undefined) deleted++;
      }
      if (!page.more || page.items.length === 0) break;
    }
  }
  return deleted;
}
