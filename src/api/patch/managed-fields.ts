// Field ownership in `metadata.managedFields` (FieldsV1), at the granularity these kinds need: every
// leaf of an object (a scalar, a list, or an empty map) is a field. Updates (create, PUT, PATCH) give
// their manager the fields they changed and take them from the others; server-side apply (apply.ts)
// uses the same sets to find conflicts and to remove what a manager stopped applying.
import { ApiError } from '../errors.js';
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

/**
 * Characters of field paths the managedFields of one object may spell out. fieldsV1 is a tree; the paths
 * repeat each ancestor's name once per leaf, so a 3 MB tree with one long name above many leaves
 * would spell out gigabytes. Far above what a real object's fields spell.
 */
export const MAX_FIELD_PATH_CHARS = 16 * 1024 * 1024;

/** `budget.chars`: what the paths may still spell (shared by the entries of one object). */
export function fromFieldsV1(f: Json | undefined, budget = { chars: MAX_FIELD_PATH_CHARS }): Set<string> {
  const out = new Set<string>();
  // Iterative: client-sent fieldsV1 is only bounded by the body's nesting limit.
  const stack: Array<{ node: Json | undefined; path: Path; chars: number }> = [{ node: f, path: [], chars: 0 }];
  while (stack.length > 0) {
    const { node, path, chars } = stack.pop() as { node: Json | undefined; path: Path; chars: number };
    if (!isPlainObject(node)) continue;
    const children = Object.keys(node).filter((k) => k.startsWith('f:'));
    if (children.length === 0) {
      if (path.length > 0) out.add(pathKey(path));
      continue;
    }
    // Pushed last to first, so the paths come out in document order.
    for (const k of children.reverse()) {
      const childChars = chars + k.length - 1;
      budget.chars -= childChars;
      if (budget.chars < 0) {
        throw new ApiError(422, 'Invalid', `metadata.managedFields: Invalid value: its fieldsV1 spells out more than ${MAX_FIELD_PATH_CHARS} characters of field paths`);
      }
      stack.push({ node: node[k] as Json, path: [...path, k.slice(2)], chars: childChars });
    }
  }
  return out;
}

export interface ManagedEntry {
  entry: JsonObject;
  fields: Set<string>;
}

export function readManaged(obj: KubeObject | undefined): ManagedEntry[] {
  const list = obj?.metadata.managedFields;
  if (!Array.isArray(list)) return [];
  const budget = { chars: MAX_FIELD_PATH_CHARS };
  return list.filter(isPlainObject).map((e) => ({ entry: structuredClone(e), fields: fromFieldsV1(e['fieldsV1'], budget) }));
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
