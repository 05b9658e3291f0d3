// Field ownership in `metadata.managedFields` (FieldsV1), at the granularity these kinds need: every
// leaf of an object (a scalar, a list, or an empty map) is a field. Updates (create, PUT, PATCH) give
// their manager the fields they changed and take them from the others; server-side apply (apply.ts)
// uses the same sets to find conflicts and to remove what a manager stopped applying.
import { isPlainObject, type Json, type JsonObject, type KubeObject } from '../objects.js';

/** Paths never owned (identity and server-set metadata). */
export const UNOWNED = new Set(['apiVersion', 'kind', 'metadata.name', 'metadata.namespace', 'metadata.uid', 'metadata.resourceVersion',
  'metadata.creationTimestamp', 'metadata.managedFields', 'metadata.generation', 'metadata.deletionTimestamp', 'metadata.selfLink']);

export type Path = string[];
const SEP = '\u0000';
export const pathKey = (p: Path): string => p.join(SEP);
const keyPath = (k: string): Path => k.split(SEP);

/** Leaf paths of `v` → JSON text of their value (objects recurse; lists and scalars are leaves). */
export function leaves(v: Json | undefined, prefix: Path = [], out = new Map<string, string>()): Map<string, string> {
  if (isPlainObject(v) && (Object.keys(v).length > 0 || prefix.length === 0)) {
    for (const [k, x] of Object.entries(v)) if (x !== undefined) leaves(x, [...prefix, k], out);
    return out;
  }
  if (prefix.length > 0 && !UNOWNED.has(prefix.join('.'))) out.set(pathKey(prefix), JSON.stringify(v));
  return out;
}

export function toFieldsV1(paths: Iterable<string>): JsonObject {
  const root: JsonObject = {};
  for (const k of paths) {
    let cur = root;
    for (const seg of keyPath(k)) {
      const fk = `f:${seg}`;
      if (!isPlainObject(cur[fk])) cur[fk] = {};
      cur = cur[fk] as JsonObject;
    }
  }
  return root;
}

export function fromFieldsV1(f: Json | undefined, prefix: Path = [], out = new Set<string>()): Set<string> {
  if (!isPlainObject(f)) return out;
  const children = Object.keys(f).filter((k) => k.startsWith('f:'));
  if (children.length === 0) {
    if (prefix.length > 0) out.add(pathKey(prefix));
    return out;
  }
  for (const k of children) fromFieldsV1(f[k] as Json, [...prefix, k.slice(2)], out);
  return out;
}

export interface ManagedEntry {
  entry: JsonObject;
  fields: Set<string>;
}

export function readManaged(obj: KubeObject | undefined): ManagedEntry[] {
  const list = obj?.metadata.managedFields;
  if (!Array.isArray(list)) return [];
  return list.filter(isPlainObject).map((e) => ({ entry: structuredClone(e), fields: fromFieldsV1(e['fieldsV1']) }));
}

/** Writes the entries back (dropping those that own nothing), in their order. */
export function writeManaged(obj: KubeObject, entries: ManagedEntry[]): void {
  const out = entries.filter((e) => e.fields.size > 0).map((e) => ({ ...e.entry, fieldsType: 'FieldsV1', fieldsV1: toFieldsV1([...e.fields].sort()) }));
  if (out.length) obj.metadata.managedFields = out;
  else delete obj.metadata.managedFields;
}

/**
 * An Update by `manager`: the leaves that differ between `old` and `next` become its own (taken from
 * the other managers); removed leaves are dropped from everyone. Nothing changed: managedFields stay.
 */
export function trackUpdate(old: KubeObject | undefined, next: KubeObject, manager: string, now: string): void {
  const before = leaves(old as unknown as Json | undefined);
  const after = leaves(next as unknown as Json);
  const changed: string[] = [];
  for (const [k, v] of after) if (before.get(k) !== v) changed.push(k);
  const removed = [...before.keys()].filter((k) => !after.has(k));
  // Client-sent managedFields win when present (kube lets clients reset them); else the stored ones.
  const entries = readManaged(next.metadata.managedFields !== undefined ? next : old);
  if (changed.length === 0 && removed.length === 0) {
    writeManaged(next, entries);
    return;
  }
  const gone = new Set([...changed, ...removed]);
  for (const e of entries) for (const k of gone) e.fields.delete(k);
  let mine = entries.find((e) => e.entry['manager'] === manager && e.entry['operation'] === 'Update');
  if (!mine) {
    mine = { entry: { manager, operation: 'Update', apiVersion: next.apiVersion ?? 'v1' }, fields: new Set() };
    entries.push(mine);
  }
  for (const k of changed) mine.fields.add(k);
  mine.entry['time'] = now;
  writeManaged(next, entries);
}
