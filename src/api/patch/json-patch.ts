// RFC 6902 JSON patch (add, remove, replace, move, copy, test) with RFC 6901 pointers.
import { DEFAULT_MAX_BODY_BYTES, depthOf, jsonSizeWithin, MAX_JSON_PATCH_OPERATIONS, MAX_NESTING_DEPTH } from '../body-limits.js';
import { badRequest, ApiError } from '../errors.js';
import { cloneJson, isPlainObject, jsonEqual, type Json } from '../objects.js';

function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw badRequest(`invalid JSON pointer ${JSON.stringify(pointer)}`);
  return pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function resolveParent(doc: Json, tokens: string[], pointer: string): { parent: Json; last: string } {
  let cur = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(t)] as Json;
    else if (isPlainObject(cur)) cur = cur[t] as Json;
    else cur = undefined as unknown as Json;
    if (cur === undefined) throw unprocessable(`doc is missing path: ${JSON.stringify(pointer)}`);
  }
  return { parent: cur, last: tokens[tokens.length - 1] as string };
}

function unprocessable(message: string): ApiError {
  return new ApiError(422, 'Invalid', message);
}

function get(doc: Json, pointer: string): Json {
  let cur: Json | undefined = doc;
  for (const t of parsePointer(pointer)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isPlainObject(cur)) cur = cur[t];
    else cur = undefined;
    if (cur === undefined) throw unprocessable(`doc is missing path: ${JSON.stringify(pointer)}`);
  }
  return cur as Json;
}

function add(doc: Json, pointer: string, value: Json): Json {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return value;
  const { parent, last } = resolveParent(doc, tokens, pointer);
  if (Array.isArray(parent)) {
    const idx = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(idx) || idx < 0 || idx > parent.length) throw unprocessable(`add operation does not apply: index out of range in ${JSON.stringify(pointer)}`);
    parent.splice(idx, 0, value);
  } else if (isPlainObject(parent)) {
    parent[last] = value;
  } else {
    throw unprocessable(`doc is missing path: ${JSON.stringify(pointer)}`);
  }
  return doc;
}

function remove(doc: Json, pointer: string): Json {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return null;
  const { parent, last } = resolveParent(doc, tokens, pointer);
  if (Array.isArray(parent)) {
    const idx = Number(last);
    if (!Number.isInteger(idx) || idx < 0 || idx >= parent.length) throw unprocessable(`doc is missing path: ${JSON.stringify(pointer)}`);
    parent.splice(idx, 1);
  } else if (isPlainObject(parent) && Object.prototype.hasOwnProperty.call(parent, last)) {
    delete parent[last];
  } else {
    throw unprocessable(`doc is missing path: ${JSON.stringify(pointer)}`);
  }
  return doc;
}

export interface JsonPatchLimits {
  /** Bytes the patch's `copy` operations may add in all (kube: --max-request-body-bytes, 3 MiB). */
  maxCopyBytes: number;
  /** Nesting depth of the patched document. */
  maxDepth: number;
}

const DEFAULT_LIMITS: JsonPatchLimits = { maxCopyBytes: DEFAULT_MAX_BODY_BYTES, maxDepth: MAX_NESTING_DEPTH };

/**
 * Applies `patch` to a copy of `original`. Bounded like kube's: at most 10,000 operations (413),
 * `copy` may add at most maxCopyBytes in all (422; without it ~30 copies of a doubling array reach
 * terabytes), and no operation may nest the document past maxDepth (422; tracked as an upper bound
 * from the pointers, so nothing is walked per operation).
 */
export function applyJsonPatch(original: Json, patch: Json, limits: JsonPatchLimits = DEFAULT_LIMITS): Json {
  if (!Array.isArray(patch)) throw badRequest('a JSON patch must be an array of operations');
  if (patch.length > MAX_JSON_PATCH_OPERATIONS) {
    throw new ApiError(413, 'RequestEntityTooLarge', `Request entity too large: The allowed maximum operations in a JSON patch is ${MAX_JSON_PATCH_OPERATIONS}, got ${patch.length}`);
  }
  let doc = cloneJson(original);
  let depthBound = depthOf(doc);
  let copied = 0;
  /** A value of depth `valueDepth` lands under `pointer`. */
  const deepen = (pointer: string, valueDepth: number): void => {
    depthBound = Math.max(depthBound, parsePointer(pointer).length + valueDepth);
    if (depthBound > limits.maxDepth) throw unprocessable(`the patched object would exceed max depth of ${limits.maxDepth} at ${JSON.stringify(pointer)}`);
  };
  for (const op of patch) {
    if (!isPlainObject(op) || typeof op['op'] !== 'string' || typeof op['path'] !== 'string') {
      throw badRequest('every JSON patch operation needs string "op" and "path"');
    }
    const path = op['path'];
    switch (op['op']) {
      case 'add':
        deepen(path, depthOf(op['value']));
        doc = add(doc, path, cloneJson(op['value'] ?? null));
        break;
      case 'remove':
        doc = remove(doc, path);
        break;
      case 'replace':
        get(doc, path);
        deepen(path, depthOf(op['value']));
        doc = add(remove(doc, path), path, cloneJson(op['value'] ?? null));
        break;
      case 'move': {
        const from = String(op['from'] ?? '');
        const v = get(doc, from);
        // What moves is at most depthBound - |from| deep.
        deepen(path, depthBound - parsePointer(from).length);
        doc = add(remove(doc, from), path, v);
        break;
      }
      case 'copy': {
        const from = String(op['from'] ?? '');
        const v = get(doc, from);
        copied += jsonSizeWithin(v, limits.maxCopyBytes - copied);
        if (copied > limits.maxCopyBytes) {
          throw unprocessable(`Unable to complete the copy, the accumulated size increase of copy exceeds the limit ${limits.maxCopyBytes}`);
        }
        deepen(path, depthBound - parsePointer(from).length);
        doc = add(doc, path, cloneJson(v));
        break;
      }
      case 'test':
        if (!jsonEqual(get(doc, path), op['value'] ?? null)) throw unprocessable(`testing value ${JSON.stringify(path)} failed: test failed`);
        break;
      default:
        throw badRequest(`unexpected JSON patch operation ${JSON.stringify(op['op'])}`);
    }
  }
  return doc;
}
