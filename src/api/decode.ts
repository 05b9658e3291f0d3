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

export const MAX_NESTING_DEPTH = 10_000;

/** Iterative (the document may be nested deeper than the stack allows); only containers are visited. */
function depthExceeds(doc: unknown, max: number): boolean {
  const stack: Array<[object, number]> = [];
  if (doc !== null && typeof doc === 'object') stack.push([doc, 1]);
  while (stack.length > 0) {
    const [v, d] = stack.pop() as [object, number];
    if (d > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child as object, d + 1]);
    }
  }
  return false;
}

/**
 * The parser's reason, one line, without the excerpt of the body V8 quotes in JSON errors
 * (`Unexpected token '}', ..."a": "s3cr"... is not valid JSON`): a body may hold secret values.
 */
function parseErrorReason(err: unknown): string {
  if (!(err instanceof Error)) return 'invalid document';
  const line = (err.message.split('\n')[0] ?? '').replace(/\r/g, '\\r');
  return line.replace(/, (?:\.\.\.)?".*" is not valid JSON$/s, '');
}

/** Parses a JSON (or, for apply and YAML content types, YAML) document. */
export function parseDocument(body: Buffer, type: 'json' | 'yaml'): Json {
  const text = body.toString('utf8');
  try {
    // logLevel 'error': the yaml library would otherwise print warnings quoting the body (which may
    // hold secret values) to stderr via process.emitWarning.
    const doc = (type === 'yaml' ? parseYaml(text, { logLevel: 'error' }) : JSON.parse(text)) as Json;
    // Go's encoding/json (kube's decoder) stops at 10000 levels; our recursive walks (schema
    // check, merge patches) must not see more, or they would overflow the stack (a 500). A JSON
    // document needs at least one byte per level, so a shorter one is not walked. YAML always is:
    // aliases can make it deeper than its text (`&a [*a]` even parses to a cycle).
    if ((type === 'yaml' || body.length > MAX_NESTING_DEPTH) && depthExceeds(doc, MAX_NESTING_DEPTH)) throw new Error('exceeded max depth');
    return doc;
  } catch (err) {
    throw badRequest(`the body of the request could not be decoded as ${type.toUpperCase()}: ${parseErrorReason(err)}`);
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
  const v = rt.version;
  if (!isPlainObject(value)) throw badRequest(`${rt.kind} in version "${v}" cannot be handled as a ${rt.kind}: the body is not a JSON object`);
  const obj = value as JsonObject;
  if (obj['apiVersion'] !== undefined && obj['apiVersion'] !== rt.apiVersion) {
    throw badRequest(`the API version in the data (${oneLine(obj['apiVersion'])}) does not match the expected API version (${rt.apiVersion})`);
  }
  if (obj['kind'] !== undefined && obj['kind'] !== rt.kind) {
    throw badRequest(`${oneLine(obj['kind'])} in version "${v}" cannot be handled as a ${rt.kind}: the object provided is unrecognized (must be of type ${rt.kind})`);
  }
  obj['apiVersion'] = rt.apiVersion;
  obj['kind'] = rt.kind;
  if (obj['metadata'] === undefined || obj['metadata'] === null) obj['metadata'] = {};
  const unknown = checkAndPrune(obj, rt.schema, rt.kind, v);
  if (unknown.length > 0) {
    const texts = unknown.map((f) => `unknown field ${JSON.stringify(f)}`);
    if (validation === 'Strict') {
      throw badRequest(`${rt.kind} in version "${v}" cannot be handled as a ${rt.kind}: strict decoding error: ${texts.join(', ')}`);
    }
    if (validation === 'Warn') warnings.push(...texts);
  }
  const k = obj as unknown as KubeObject;
  const decodeError = rt.decodeError?.(k);
  if (decodeError) throw badRequest(decodeError);
  return k;
}

/** A client-supplied value quoted in a message: control characters escaped so the message stays one line. */
function oneLine(v: unknown): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is escaped
  return String(v).replace(/[\x00-\x1f\x7f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

export function fieldValidationOf(query: URLSearchParams): FieldValidation {
  const v = query.get('fieldValidation');
  if (v === null || v === '') return 'Warn';
  if (v === 'Strict' || v === 'Warn' || v === 'Ignore') return v;
  throw badRequest(`fieldValidation must be one of "Ignore", "Warn" or "Strict", got ${JSON.stringify(v)}`);
}
