// From the neutral document tree to a typed (not yet defaulted) configuration, following
// kube-apiserver's strict decoder step by step, with its error texts:
// 1. find apiVersion/kind (Go encoding/json, case-insensitive field match);
// 2. accept only the registered kinds: `apiserver.config.k8s.io/v1 EncryptionConfiguration` and
//    the legacy `v1 EncryptionConfig` (format.md §3.1);
// 3. decode into the v1 types: wrong value types are fatal (the first one wins, a bad `timeout`
//    aborts at once as in Go), then strict errors: YAML duplicate keys, unknown fields and JSON
//    duplicate fields, all joined after `strict decoding error: `.
import type { DocNode, ParsedDocument } from './document.js';
import { GoDurationError, parseGoDuration } from './go-duration.js';
import { goQuote } from './go-format.js';

export interface DecodedKey {
  name: string;
  secret: string;
}
export interface DecodedKeys {
  keys: DecodedKey[];
}
export interface DecodedKMS {
  apiVersion: string;
  name: string;
  cachesize?: number;
  endpoint: string;
  /** Undefined when the file does not set `timeout` (defaulting fills in 3s). */
  timeoutNs?: bigint;
}
/** One `providers` element as written: may hold none or several providers (validation says so). */
export interface DecodedProvider {
  aesgcm?: DecodedKeys;
  aescbc?: DecodedKeys;
  secretbox?: DecodedKeys;
  identity?: Record<string, never>;
  kms?: DecodedKMS;
}
export interface DecodedResource {
  resources: string[];
  providers: DecodedProvider[];
}
export interface DecodedConfig {
  apiVersion: string;
  kind: string;
  resources: DecodedResource[];
}

/** The cause text of a decode failure, as kube-apiserver words it (without the file prefix). */
export class DecodeError extends Error {}

export const API_GROUP = 'apiserver.config.k8s.io';

// ---------------------------------------------------------------------------------------------
// The v1 schema (k8s.io/apiserver/pkg/apis/apiserver/v1, JSON names)

type Spec =
  | { k: 'string' }
  | { k: 'int32' }
  | { k: 'duration' }
  | { k: 'struct'; name: string; fields: Record<string, Spec> }
  | { k: 'slice'; elem: Spec };

const STRING: Spec = { k: 'string' };
const KEY_LIST: Spec = { k: 'slice', elem: { k: 'struct', name: 'Key', fields: { name: STRING, secret: STRING } } };
const KEYS: Spec = { k: 'struct', name: 'AESConfiguration', fields: { keys: KEY_LIST } };
const SECRETBOX: Spec = { k: 'struct', name: 'SecretboxConfiguration', fields: { keys: KEY_LIST } };
const KMS: Spec = {
  k: 'struct',
  name: 'KMSConfiguration',
  fields: { apiVersion: STRING, name: STRING, cachesize: { k: 'int32' }, endpoint: STRING, timeout: { k: 'duration' } },
};
const PROVIDER: Spec = {
  k: 'struct',
  name: 'ProviderConfiguration',
  fields: {
    aesgcm: KEYS,
    aescbc: KEYS,
    secretbox: SECRETBOX,
    identity: { k: 'struct', name: 'IdentityConfiguration', fields: {} },
    kms: KMS,
  },
};
const RESOURCE: Spec = {
  k: 'struct',
  name: 'ResourceConfiguration',
  fields: { resources: { k: 'slice', elem: STRING }, providers: { k: 'slice', elem: PROVIDER } },
};
const CONFIG: Spec = {
  k: 'struct',
  name: 'EncryptionConfiguration',
  fields: { apiVersion: STRING, kind: STRING, resources: { k: 'slice', elem: RESOURCE } },
};

function goType(spec: Spec): string {
  switch (spec.k) {
    case 'string':
      return 'string';
    case 'int32':
      return 'int32';
    case 'duration':
      return 'v1.Duration';
    case 'struct':
      return `v1.${spec.name}`;
    case 'slice':
      return `[]${goType(spec.elem)}`;
  }
}

function jsonKind(node: DocNode): string {
  switch (node.t) {
    case 'str':
      return 'string';
    case 'num':
      return 'number';
    case 'bool':
      return 'bool';
    case 'arr':
      return 'array';
    case 'obj':
      return 'object';
    case 'null':
      return 'null';
  }
}

// ---------------------------------------------------------------------------------------------
// Step 1 + 2: apiVersion / kind

const FIND_KIND_TYPE =
  'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }';

/** Go's case folding for JSON field names, enough for `apiVersion` and `kind`. */
function fold(s: string): string {
  return s.replace(/\u212a/g, 'k').replace(/\u017f/g, 's').toLowerCase();
}

function interpretTypeMeta(root: DocNode): { apiVersion: string; kind: string } {
  const prefix = "couldn't get version/kind; json parse error: ";
  if (root.t === 'null') return { apiVersion: '', kind: '' };
  if (root.t !== 'obj') {
    throw new DecodeError(`${prefix}json: cannot unmarshal ${jsonKind(root)} into Go value of type ${FIND_KIND_TYPE}`);
  }
  const found: { apiVersion: string; kind: string } = { apiVersion: '', kind: '' };
  let firstError: string | undefined;
  for (const [key, value] of root.entries) {
    const field = key === 'apiVersion' || fold(key) === 'apiversion' ? 'apiVersion' : key === 'kind' || fold(key) === 'kind' ? 'kind' : undefined;
    if (field === undefined || value.t === 'null') continue;
    if (value.t !== 'str') {
      firstError ??= `json: cannot unmarshal ${jsonKind(value)} into Go struct field .${field} of type string`;
      continue;
    }
    found[field] = value.v;
  }
  if (firstError !== undefined) throw new DecodeError(prefix + firstError);
  return found;
}

/** schema.ParseGroupVersion */
function parseGroupVersion(gv: string): { group: string; version: string } {
  if (gv === '' || gv === '/') return { group: '', version: '' };
  const slashes = gv.split('/').length - 1;
  if (slashes === 0) return { group: '', version: gv };
  if (slashes === 1) {
    const i = gv.indexOf('/');
    return { group: gv.slice(0, i), version: gv.slice(i + 1) };
  }
  throw new DecodeError(`unexpected GroupVersion string: ${gv}`);
}

function checkKind(meta: { apiVersion: string; kind: string }): void {
  const gv = parseGroupVersion(meta.apiVersion);
  // kube's texts go on `in '<whole file>'`; we never echo the file (it holds key secrets).
  if (meta.kind === '') throw new DecodeError("Object 'Kind' is missing");
  if (gv.version === '') throw new DecodeError("Object 'apiVersion' is missing");
  const registered =
    (gv.group === API_GROUP && gv.version === 'v1' && meta.kind === 'EncryptionConfiguration') ||
    (gv.group === '' && gv.version === 'v1' && meta.kind === 'EncryptionConfig');
  if (!registered) {
    const gvText = gv.group === '' ? gv.version : `${gv.group}/${gv.version}`;
    throw new DecodeError(`no kind ${goQuote(meta.kind)} is registered for version ${goQuote(gvText)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Step 3: strict typed decoding

interface Ctx {
  /** Go type name of the innermost struct (for `Go struct field X.path`). */
  struct: string;
  /** JSON field names from the root, without indexes (Go's errorContext.FieldStack). */
  fields: string[];
  /** The strict path with indexes, e.g. `resources[0].providers[3].kms`. */
  strictPath: string;
}

class StrictDecoder {
  savedError: string | undefined;
  readonly strictErrors: string[] = [];

  private typeError(ctx: Ctx, value: string, spec: Spec): void {
    this.savedError ??= `json: cannot unmarshal ${value} into Go struct field ${ctx.struct}.${ctx.fields.join('.')} of type ${goType(spec)}`;
  }

  /** Returns undefined for JSON null (Go leaves the zero value / nil pointer). */
  decode(node: DocNode, spec: Spec, ctx: Ctx): unknown {
    if (node.t === 'null') return undefined;
    switch (spec.k) {
      case 'string':
        if (node.t === 'str') return node.v;
        this.typeError(ctx, jsonKind(node), spec);
        return undefined;
      case 'int32': {
        if (node.t !== 'num') {
          this.typeError(ctx, jsonKind(node), spec);
          return undefined;
        }
        // strconv.ParseInt(text, 10, 64) plus the int32 overflow check
        if (!/^[+-]?[0-9]+$/.test(node.text)) {
          this.typeError(ctx, `number ${node.text}`, spec);
          return undefined;
        }
        const n = BigInt(node.text);
        if (n < -(2n ** 31n) || n > 2n ** 31n - 1n) {
          this.typeError(ctx, `number ${node.text}`, spec);
          return undefined;
        }
        return Number(n);
      }
      case 'duration': {
        // metav1.Duration.UnmarshalJSON: a JSON string parsed by time.ParseDuration. Its errors
        // abort decoding at once (Go returns Unmarshaler errors immediately).
        if (node.t !== 'str') {
          throw new DecodeError(
            `json: cannot unmarshal ${jsonKind(node)} into Go struct field ${ctx.struct}.${ctx.fields.join('.')} of type string`,
          );
        }
        try {
          return parseGoDuration(node.v);
        } catch (err) {
          if (err instanceof GoDurationError) throw new DecodeError(err.message);
          throw err;
        }
      }
      case 'slice': {
        if (node.t !== 'arr') {
          this.typeError(ctx, jsonKind(node), spec);
          return undefined;
        }
        return node.items.map((item, i) => {
          const v = this.decode(item, spec.elem, { ...ctx, strictPath: `${ctx.strictPath}[${i}]` });
          // A null element keeps Go's zero value.
          if (v === undefined) return spec.elem.k === 'struct' ? {} : spec.elem.k === 'string' ? '' : 0;
          return v;
        });
      }
      case 'struct': {
        if (node.t !== 'obj') {
          this.typeError(ctx, jsonKind(node), spec);
          return undefined;
        }
        const out: Record<string, unknown> = {};
        const seen = new Set<string>();
        for (const [key, value] of node.entries) {
          const fieldPath = ctx.strictPath === '' ? key : `${ctx.strictPath}.${key}`;
          const fieldSpec = Object.hasOwn(spec.fields, key) ? spec.fields[key] : undefined;
          if (fieldSpec === undefined) {
            this.strictErrors.push(`unknown field ${goQuote(fieldPath)}`);
            continue;
          }
          if (seen.has(key)) this.strictErrors.push(`duplicate field ${goQuote(fieldPath)}`);
          seen.add(key);
          const v = this.decode(value, fieldSpec, {
            struct: spec.name,
            fields: [...ctx.fields, key],
            strictPath: fieldPath,
          });
          if (v === undefined) {
            // JSON null sets a pointer or slice back to nil and leaves a string alone; after a
            // type error Go keeps whatever the field held.
            if (value.t === 'null' && fieldSpec.k !== 'string') delete out[key];
            continue;
          }
          if (fieldSpec.k === 'struct' && typeof out[key] === 'object' && out[key] !== null) {
            // Go decodes a repeated object field into the same struct (fields merge).
            out[key] = { ...(out[key] as Record<string, unknown>), ...(v as Record<string, unknown>) };
          } else {
            out[key] = v;
          }
        }
        return out;
      }
    }
  }
}

function asString(v: unknown): string {
  return typeof v === 'string' ? v : '';
}
function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
function asRecord(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function toKeys(v: unknown): DecodedKeys {
  return {
    keys: asArray(asRecord(v).keys).map((k) => {
      const r = asRecord(k);
      return { name: asString(r.name), secret: asString(r.secret) };
    }),
  };
}

function toKms(v: unknown): DecodedKMS {
  const r = asRecord(v);
  const kms: DecodedKMS = { apiVersion: asString(r.apiVersion), name: asString(r.name), endpoint: asString(r.endpoint) };
  if (typeof r.cachesize === 'number') kms.cachesize = r.cachesize;
  if (typeof r.timeout === 'bigint') kms.timeoutNs = r.timeout;
  return kms;
}

function toProvider(v: unknown): DecodedProvider {
  const r = asRecord(v);
  const p: DecodedProvider = {};
  if (r.aesgcm !== undefined) p.aesgcm = toKeys(r.aesgcm);
  if (r.aescbc !== undefined) p.aescbc = toKeys(r.aescbc);
  if (r.secretbox !== undefined) p.secretbox = toKeys(r.secretbox);
  if (r.identity !== undefined) p.identity = {};
  if (r.kms !== undefined) p.kms = toKms(r.kms);
  return p;
}

/** Decodes a parsed document; throws DecodeError with kube's cause text. */
export function decodeEncryptionConfig(doc: ParsedDocument): DecodedConfig {
  const meta = interpretTypeMeta(doc.root);
  checkKind(meta);

  const decoder = new StrictDecoder();
  const raw = asRecord(decoder.decode(doc.root, CONFIG, { struct: 'EncryptionConfiguration', fields: [], strictPath: '' }));
  if (decoder.savedError !== undefined) throw new DecodeError(decoder.savedError);
  const strict = [...(doc.yamlStrictError === undefined ? [] : [doc.yamlStrictError]), ...decoder.strictErrors];
  if (strict.length > 0) throw new DecodeError(`strict decoding error: ${strict.join(', ')}`);

  return {
    apiVersion: meta.apiVersion,
    kind: meta.kind,
    resources: asArray(raw.resources).map((e) => {
      const r = asRecord(e);
      return { resources: asArray(r.resources).map(asString), providers: asArray(r.providers).map(toProvider) };
    }),
  };
}
