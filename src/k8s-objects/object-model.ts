// The JSON object model: Kubernetes objects are kept as plain JSON values (what is stored and what
// the wire carries), with a few typed accessors for metadata. Shared by the API server and the tools.
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  managedFields?: JsonObject[];
  [key: string]: Json | undefined;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: Json | undefined | ObjectMeta;
}

/** A metav1.Time as kube serializes it: RFC 3339 in UTC, whole seconds. */
export function rfc3339Seconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}
