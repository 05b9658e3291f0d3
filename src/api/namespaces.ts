// Namespace lifecycle: the bootstrap namespaces every cluster has, the check that a namespace
// exists (and is not terminating) before objects are created in it, and deletion of a namespace
// with everything in it. Deletion is synchronous (kubectl.md §0.8): the namespace is marked
// Terminating, its contents are deleted, then the namespace itself.
import { randomUUID } from 'node:crypto';
import { isStoreError } from '../storage/errors.js';
import { forbidden, notFound } from './errors.js';
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

/** 404 when the namespace does not exist, 403 when it is being deleted. */
export async function assertNamespaceWritable(repo: ObjectRepository, namespace: string): Promise<void> {
  const ns = await repo.get(namespaces, undefined, namespace);
  if (!ns) throw notFound('namespaces', namespace);
  if (ns.obj.metadata.deletionTimestamp) {
    throw forbidden('namespaces', namespace, `unable to create new content in namespace ${namespace} because it is being terminated`);
  }
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
