// Request bodies → objects: JSON, YAML or Kubernetes protobuf by Content-Type; kind/apiVersion
// defaulted from the URL (python sends neither); type checks and unknown fields per
// fieldValidation (Strict → 400, Warn → a warning, Ignore → dropped silently).
import { parse as parseYaml } from 'yaml';
import { badRequest, unsupportedMediaType } from './errors.js';
import { isPlainObject, type Json, type JsonObject, type KubeObject } from './objects.js';
import { decodeProtobufObject } from './protobuf.js';
import type { ResourceType } from './resource-types.js';
import { checkAndPrune } from './schema.js';

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

export function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** Parses a JSON (or, for apply and YAML content types, YAML) document. */
export function parseDocument(body: Buffer, type: 'json' | 'yaml'): Json {
  const text = body.toString('utf8');
  try {
    return (type === 'yaml' ? parseYaml(text) : JSON.parse(text)) as Json;
  } catch (err) {
    throw badRequest(`the body of the request could not be decoded as ${type.toUpperCase()}: ${err instanceof Error ? err.message.split('\n')[0] : 'invalid document'}`);
  }
}

/** Decodes the body of a create/update into an object (not yet checked: see checkObject). */
export function decodeBody(body: Buffer, contentType: string | undefined): Json {
  if (body.length === 0) throw badRequest('the body of the request was empty');
  const type = mediaType(contentType);
  switch (type) {
    case '':
    case 'application/json':
      return parseDocument(body, 'json');
    case 'application/yaml':
      return parseDocument(body, 'yaml');
    case 'application/vnd.kubernetes.protobuf':
      return decodeProtobufObject(body) as unknown as Json;
    default:
      throw unsupportedMediaType(`the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf`);
  }
}

/**
 * Checks a decoded or patched object against the kind: must be an object of this kind and
 * version; types must fit; unknown fields are removed (returned as warnings, or a 400 when Strict).
 */
export function checkObject(rt: ResourceType, value: Json, validation: FieldValidation, warnings: string[]): KubeObject {
  if (!isPlainObject(value)) throw badRequest(`${rt.kind} in version "v1" cannot be handled as a ${rt.kind}: the body is not a JSON object`);
  const obj = value as JsonObject;
  if (obj['apiVersion'] !== undefined && obj['apiVersion'] !== 'v1') {
    throw badRequest(`the API version in the data (${String(obj['apiVersion'])}) does not match the expected API version (v1)`);
  }
  if (obj['kind'] !== undefined && obj['kind'] !== rt.kind) {
    throw badRequest(`${String(obj['kind'])} in version "v1" cannot be handled as a ${rt.kind}: the object provided is unrecognized (must be of type ${rt.kind})`);
  }
  obj['apiVersion'] = 'v1';
  obj['kind'] = rt.kind;
  if (obj['metadata'] === undefined || obj['metadata'] === null) obj['metadata'] = {};
  const unknown = checkAndPrune(obj, rt.schema, rt.kind);
  if (unknown.length > 0) {
    const texts = unknown.map((f) => `unknown field ${JSON.stringify(f)}`);
    if (validation === 'Strict') {
      throw badRequest(`${rt.kind} in version "v1" cannot be handled as a ${rt.kind}: strict decoding error: ${texts.join(', ')}`);
    }
    if (validation === 'Warn') warnings.push(...texts);
  }
  const k = obj as unknown as KubeObject;
  const decodeError = rt.decodeError?.(k);
  if (decodeError) throw badRequest(decodeError);
  return k;
}

export function fieldValidationOf(query: URLSearchParams): FieldValidation {
  const v = query.get('fieldValidation');
  if (v === null || v === '') return 'Warn';
  if (v === 'Strict' || v === 'Warn' || v === 'Ignore') return v;
  throw badRequest(`fieldValidation must be one of "Ignore", "Warn" or "Strict", got ${JSON.stringify(v)}`);
}
