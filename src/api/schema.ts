// The shapes of the core kinds (and the ObjectMeta every kind shares), for strict decoding (unknown fields) and type checks, like the
// json decoding of kube's generated Go types. `map` = string-keyed map of strings; `any` = opaque.
import { badRequest } from './errors.js';
import { isPlainObject, type Json, type JsonObject } from './objects.js';

export type FieldSchema =
  | { type: 'object'; fields: Record<string, FieldSchema> }
  | { type: 'list'; items: FieldSchema }
  | { type: 'map' }
  | { type: 'string' }
  | { type: 'bool' }
  | { type: 'int' }
  | { type: 'any' };

const str: FieldSchema = { type: 'string' };
const map: FieldSchema = { type: 'map' };
const any: FieldSchema = { type: 'any' };

export const objectMetaSchema: FieldSchema = {
  type: 'object',
  fields: {
    name: str, generateName: str, namespace: str, selfLink: str, uid: str, resourceVersion: str,
    // metav1.Time decodes from a string (or null) only, as in kube; any other shape is a 400 (before,
    // an object here reached the managed-fields walks, which are not built for deep input).
    generation: { type: 'int' }, creationTimestamp: str, deletionTimestamp: str, deletionGracePeriodSeconds: { type: 'int' },
    labels: map, annotations: map,
    ownerReferences: {
      type: 'list',
      items: { type: 'object', fields: { apiVersion: str, kind: str, name: str, uid: str, controller: { type: 'bool' }, blockOwnerDeletion: { type: 'bool' } } },
    },
    finalizers: { type: 'list', items: str },
    managedFields: { type: 'list', items: any },
  },
};

function top(fields: Record<string, FieldSchema>): FieldSchema {
  return { type: 'object', fields: { apiVersion: str, kind: str, metadata: objectMetaSchema, ...fields } };
}

export const secretSchema = top({ data: map, stringData: map, type: str, immutable: { type: 'bool' } });
export const configMapSchema = top({ data: map, binaryData: map, immutable: { type: 'bool' } });
export const namespaceSchema = top({
  spec: { type: 'object', fields: { finalizers: { type: 'list', items: str } } },
  status: { type: 'object', fields: { phase: str, conditions: { type: 'list', items: any } } },
});

function jsonTypeName(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return 'object';
  return typeof v;
}

/**
 * Walks `value` against `schema`: type mismatches throw 400 (kube: "cannot be handled as a <Kind>"),
 * unknown fields are collected as dotted paths and removed from `value` (kube drops them unless
 * fieldValidation=Strict, in which case the caller turns them into a 400).
 */
export function checkAndPrune(value: JsonObject, schema: FieldSchema, kind: string, version = 'v1'): string[] {
  const unknown: string[] = [];
  const fail = (path: string, v: Json, want: string): never => {
    throw badRequest(`${kind} in version "${version}" cannot be handled as a ${kind}: json: cannot unmarshal ${jsonTypeName(v)} into Go struct field ${kind}.${path} of type ${want}`);
  };
  const walk = (v: Json, s: FieldSchema, path: string): void => {
    if (v === null) return; // null is the zero value for every field
    switch (s.type) {
      case 'any':
        return;
      case 'string':
        if (typeof v !== 'string') fail(path, v, 'string');
        return;
      case 'bool':
        if (typeof v !== 'boolean') fail(path, v, 'bool');
        return;
      case 'int':
        if (typeof v !== 'number' || !Number.isInteger(v)) fail(path, v, 'int64');
        return;
      case 'map':
        if (!isPlainObject(v)) fail(path, v, 'map[string]string');
        for (const [k, x] of Object.entries(v as JsonObject)) {
          if (x !== null && typeof x !== 'string') fail(`${path}[${k}]`, x, 'string');
        }
        return;
      case 'list':
        if (!Array.isArray(v)) fail(path, v, 'array');
        (v as Json[]).forEach((x, i) => walk(x, s.items, `${path}[${i}]`));
        return;
      case 'object': {
        if (!isPlainObject(v)) fail(path, v, 'object');
        const o = v as JsonObject;
        for (const k of Object.keys(o)) {
          const child = s.fields[k];
          const p = path ? `${path}.${k}` : k;
          if (child === undefined) {
            unknown.push(p);
            delete o[k];
          } else {
            walk(o[k] as Json, child, p);
          }
        }
      }
    }
  };
  walk(value, schema, '');
  return unknown;
}
