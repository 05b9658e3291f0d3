// Request bodies → objects: JSON, YAML or Kubernetes protobuf by Content-Type, each bounded in depth
// (and YAML in time, memory and aliases: yaml/decoder.ts); kind/apiVersion
// defaulted from the URL (python sends neither); type checks and unknown fields per
// fieldValidation (Strict → 400, Warn → a warning, Ignore → dropped silently).
import { depthError, jsonNestingExceeds, MAX_NESTING_DEPTH, shapeExceeds } from './body-limits.js';
import { badRequest, unsupportedMediaType } from './errors.js';
import { isPlainObject, type Json, type JsonObject, type KubeObject } from './objects.js';
import { decodeProtobufObject } from './protobuf.js';
import type { ResourceType } from './resource-types.js';
import { checkAndPrune } from './schema.js';
import type { YamlDecoder } from './yaml/decoder.js';

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

export function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
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

/**
 * Parses a JSON body. Nesting is checked on the bytes first (body-limits.ts): kube's decoder stops
 * at 10,000 levels, ours at MAX_NESTING_DEPTH, before JSON.parse builds anything.
 */
export function parseJson(body: Buffer): Json {
  if (jsonNestingExceeds(body, MAX_NESTING_DEPTH)) throw depthError('JSON');
  try {
    return JSON.parse(body.toString('utf8')) as Json;
  } catch (err) {
    throw badRequest(`the body of the request could not be decoded as JSON: ${parseErrorReason(err)}`);
  }
}

/**
 * Parses a YAML body (create/update with application/yaml, server-side apply). JSON is YAML, and
 * what kubectl sends as apply-patch+yaml is JSON: that takes JSON.parse (fast, native); anything
 * else goes to the bounded YAML decoder off the event loop (yaml/decoder.ts).
 */
export async function parseYaml(body: Buffer, yaml: YamlDecoder): Promise<Json> {
  const text = body.toString('utf8');
  if (/^\s*[[{]/.test(text) && !jsonNestingExceeds(body, MAX_NESTING_DEPTH)) {
    try {
      return JSON.parse(text) as Json;
    } catch {
      // flow-style YAML such as `{a: 1}`: the YAML decoder decides
    }
  }
  return yaml.decode(text);
}

/** Decodes the body of a create/update into an object (not yet checked: see checkObject). */
export async function decodeBody(body: Buffer, contentType: string | undefined, yaml: YamlDecoder): Promise<Json> {
  if (body.length === 0) throw badRequest('the body of the request was empty');
  const type = mediaType(contentType);
  switch (type) {
    case '':
    case 'application/json':
      return parseJson(body);
    case 'application/yaml':
      return parseYaml(body, yaml);
    case 'application/vnd.kubernetes.protobuf': {
      const obj = decodeProtobufObject(body);
      // managedFields[].fieldsV1 is JSON inside the protobuf, as deep as its sender made it.
      if (shapeExceeds(obj, MAX_NESTING_DEPTH) !== undefined) throw depthError('protobuf');
      return obj as unknown as Json;
    }
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
