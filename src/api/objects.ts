// The JSON object model: Kubernetes objects are kept as plain JSON values (what is stored and what
// the wire carries), with a few typed accessors for metadata.
import type { Json, JsonObject, KubeObject, ObjectMeta } from '../k8s-objects/object-model.js';

export type { Json, JsonObject, KubeObject, ObjectMeta };
export { rfc3339Seconds } from '../k8s-objects/object-model.js';

export function isPlainObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function cloneJson<T>(v: T): T {
  return structuredClone(v);
}

/** Deep equality of JSON values (key order ignored). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

/** RFC 3339 with seconds precision and `Z`, as metav1.Time marshals. */
export function metaOf(obj: KubeObject): ObjectMeta {
  return obj.metadata;
}
