// What one request body may cost (issue #20 §1): nesting depth, JSON-patch operations, the bytes a
// patch's copies add. Checked before a document is parsed or walked where that is possible, so a
// hostile body is refused before it costs memory or stack. The YAML-specific bounds (time, heap,
// aliases) live with the YAML decoder (src/api/yaml/decoder.ts); the byte size limit is read in server.ts.
import { ApiError, badRequest } from './errors.js';

/**
 * Deepest nesting of any request document (JSON, YAML, protobuf's embedded JSON). kube-apiserver's
 * decoders allow 10,000 (Go encoding/json, go-yaml), but the JS walks every object goes through
 * recurse: structuredClone fails near 1,900 levels of objects, JSON.stringify near 4,100, the yaml
 * parser near 400 on the main thread's stack. 1,000 keeps each of them with room to spare (the YAML
 * decoder runs in a worker with a larger stack); a Secret, ConfigMap or Namespace nests at most ~6
 * levels (managedFields.fieldsV1), so no real object comes close.
 */
export const MAX_NESTING_DEPTH = 1000;

/** kube-apiserver's limit for request bodies (3 MiB; `--max-request-body-bytes`). */
export const DEFAULT_MAX_BODY_BYTES = 3 * 1024 * 1024;

/** The YAML decoder's bounds that follow the body limit: depth, and expansion (aliases) to at most twice the body. */
export function yamlBodyLimits(maxBodyBytes: number): { maxDepth: number; maxJsonChars: number } {
  return { maxDepth: MAX_NESTING_DEPTH, maxJsonChars: 2 * maxBodyBytes };
}

/** kube-apiserver's maximum number of operations in one JSON patch (handlers/patch.go). */
export const MAX_JSON_PATCH_OPERATIONS = 10_000;

/** 400 for a JSON or protobuf body nested past MAX_NESTING_DEPTH (the YAML decoder words its own, at its configured depth). */
export function depthError(type: 'JSON' | 'protobuf'): ApiError {
  return badRequest(`the body of the request could not be decoded as ${type}: exceeded max depth of ${MAX_NESTING_DEPTH}`);
}

/**
 * True when the JSON text nests deeper than `max`: one pass over the bytes, brackets inside strings
 * skipped. Exact for valid JSON and never allocates, so a 3 MB `[[[[…` is refused before JSON.parse
 * builds 1.5 million arrays.
 */
export function jsonNestingExceeds(text: Uint8Array, max: number): boolean {
  // Valid JSON deeper than `max` opens and closes max + 1 brackets; a shorter text that parses is
  // shallower, and one that does not parse fails JSON.parse long before it costs anything.
  if (text.length < 2 * (max + 1)) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return false;
}

/**
 * Nesting depth of a decoded value, iteratively (a value may be deeper than the stack allows), with a
 * budget of visited containers: a value decoded from YAML may share subtrees through aliases, and
 * walking such a DAG as a tree could take exponential time. Returns 'deep' past `maxDepth`, 'large'
 * past `maxNodes` visits, else undefined.
 */
export function shapeExceeds(doc: unknown, maxDepth: number, maxNodes = Number.POSITIVE_INFINITY): 'deep' | 'large' | undefined {
  const stack: Array<[object, number]> = [];
  if (doc !== null && typeof doc === 'object') stack.push([doc, 1]);
  let visited = 0;
  while (stack.length > 0) {
    const [v, d] = stack.pop() as [object, number];
    if (d > maxDepth) return 'deep';
    if (++visited > maxNodes) return 'large';
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child as object, d + 1]);
    }
  }
  return undefined;
}

/** Nesting depth of a JSON value (a tree: no shared subtrees), iteratively; a scalar is 0. */
export function depthOf(value: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop() as [unknown, number];
    if (v === null || typeof v !== 'object') continue;
    if (d + 1 > max) max = d + 1;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}

/**
 * Serialized size of a JSON value in bytes (UTF-16 units of its JSON text, close enough), counted
 * iteratively and given up as soon as it passes `budget` (returns budget + 1 then), so measuring a
 * huge value costs no more than the budget.
 */
export function jsonSizeWithin(value: unknown, budget: number): number {
  let size = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object') {
      size += typeof v === 'string' ? v.length + 2 : String(v).length;
    } else if (Array.isArray(v)) {
      size += 2 + v.length;
      for (const x of v) stack.push(x);
    } else {
      const entries = Object.entries(v);
      size += 2 + entries.length;
      for (const [k, x] of entries) {
        size += k.length + 3;
        stack.push(x);
      }
    }
    if (size > budget) return budget + 1;
  }
  return size;
}
