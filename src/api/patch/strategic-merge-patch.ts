// Strategic merge patch for Secret, ConfigMap and Namespace (kubectl.md §6). Maps merge and null
// deletes a key (as in RFC 7386); lists replace, except the merge-strategy lists of ObjectMeta:
// `finalizers` (primitive list: union; `$deleteFromPrimitiveList/finalizers` removes values;
// `$setElementOrder/finalizers` orders) and `ownerReferences` (merge key `uid`; `$patch: delete`
// on an element removes it). `$patch: replace|delete` on a map and `$retainKeys` are honoured.
import { badRequest } from '../errors.js';
import { cloneJson, isPlainObject, type Json, type JsonObject } from '../objects.js';

type ListStrategy = { kind: 'primitive' } | { kind: 'merge'; key: string };

/** Merge-strategy lists by path (dotted, from the object root). Everything else replaces. */
const LIST_STRATEGIES: Record<string, ListStrategy> = {
  'metadata.finalizers': { kind: 'primitive' },
  'metadata.ownerReferences': { kind: 'merge', key: 'uid' },
};

const DELETE_PRIMITIVE = '$deleteFromPrimitiveList/';
const SET_ORDER = '$setElementOrder/';

export function applyStrategicMergePatch(original: JsonObject, patch: Json): JsonObject {
  if (!isPlainObject(patch)) throw badRequest('the strategic merge patch is not a JSON object');
  return mergeMap(original, patch, '') as JsonObject;
}

function mergeMap(original: Json | undefined, patch: JsonObject, path: string): Json | undefined {
  const directive = patch['$patch'];
  if (directive === 'delete') return undefined;
  const base: JsonObject = directive === 'replace' || !isPlainObject(original) ? {} : { ...original };
  const retain = Array.isArray(patch['$retainKeys']) ? new Set(patch['$retainKeys'].map(String)) : undefined;
  const orders: Array<[string, Json[]]> = [];
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' || k === '$retainKeys') continue;
    if (k.startsWith(DELETE_PRIMITIVE)) {
      const field = k.slice(DELETE_PRIMITIVE.length);
      const drop = new Set((Array.isArray(v) ? v : []).map((x) => JSON.stringify(x)));
      const cur = base[field];
      if (Array.isArray(cur)) base[field] = cur.filter((x) => !drop.has(JSON.stringify(x)));
      continue;
    }
    if (k.startsWith(SET_ORDER)) {
      if (Array.isArray(v)) orders.push([k.slice(SET_ORDER.length), v]);
      continue;
    }
    const childPath = path ? `${path}.${k}` : k;
    if (v === null) {
      delete base[k];
    } else if (isPlainObject(v)) {
      const merged = mergeMap(base[k], v, childPath);
      if (merged === undefined) delete base[k];
      else base[k] = merged;
    } else if (Array.isArray(v)) {
      base[k] = mergeList(base[k], v, LIST_STRATEGIES[childPath], childPath);
    } else {
      base[k] = v;
    }
  }
  for (const [field, order] of orders) {
    const cur = base[field];
    if (Array.isArray(cur)) base[field] = applyOrder(cur, order, LIST_STRATEGIES[path ? `${path}.${field}` : field]);
  }
  if (retain) for (const k of Object.keys(base)) if (!retain.has(k)) delete base[k];
  return base;
}

function mergeList(original: Json | undefined, patch: Json[], strategy: ListStrategy | undefined, path: string): Json[] {
  if (strategy === undefined || !Array.isArray(original)) {
    return patch.filter((x) => !(isPlainObject(x) && x['$patch'] === 'delete')).map((x) => cloneJson(x));
  }
  if (strategy.kind === 'primitive') {
    const result = [...original];
    const seen = new Set(result.map((x) => JSON.stringify(x)));
    for (const x of patch) {
      const s = JSON.stringify(x);
      if (!seen.has(s)) {
        seen.add(s);
        result.push(x);
      }
    }
    return result;
  }
  // Elements by merge key (the first of each key, as a scan would find): a list of n elements
  // patched with m is O(n + m), not O(n·m) — a 3 MB patch holds ~200,000 elements.
  const key = strategy.key;
  const result: Array<Json | undefined> = [...original];
  const byKey = new Map<unknown, number>();
  result.forEach((x, i) => {
    if (isPlainObject(x) && !byKey.has(x[key])) byKey.set(x[key], i);
  });
  for (const item of patch) {
    if (!isPlainObject(item)) throw badRequest(`${path}: list elements of a merge list must be objects`);
    const idx = byKey.get(item[key]);
    if (item['$patch'] === 'delete') {
      if (idx !== undefined) {
        result[idx] = undefined;
        byKey.delete(item[key]);
      }
      continue;
    }
    if (idx !== undefined) {
      result[idx] = mergeMap(result[idx], item, path) ?? null;
    } else {
      byKey.set(item[key], result.length);
      result.push(mergeMap(undefined, item, path) ?? null);
    }
  }
  return result.filter((x): x is Json => x !== undefined);
}

/** `$setElementOrder`: listed elements first, in the given order; the others keep their relative order after them. */
function applyOrder(list: Json[], order: Json[], strategy: ListStrategy | undefined): Json[] {
  const id = (x: Json): string => JSON.stringify(strategy?.kind === 'merge' && isPlainObject(x) ? x[strategy.key] : x);
  const rank = new Map(order.map((x, i) => [id(x), i]));
  const inOrder = list.filter((x) => rank.has(id(x))).sort((a, b) => (rank.get(id(a)) as number) - (rank.get(id(b)) as number));
  return [...inOrder, ...list.filter((x) => !rank.has(id(x)))];
}
