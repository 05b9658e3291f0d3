// RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else replaces.
import { cloneJson, isPlainObject, type Json } from '../objects.js';

export function applyMergePatch(target: Json | undefined, patch: Json): Json {
  if (!isPlainObject(patch)) return cloneJson(patch);
  const result: { [k: string]: Json } = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete result[k];
    else result[k] = applyMergePatch(result[k], v);
  }
  return result;
}
