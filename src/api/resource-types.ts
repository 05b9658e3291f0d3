// The kinds served: core/v1 Secret, ConfigMap, Namespace, and storagemigration.k8s.io/v1beta1
// StorageVersionMigration (its own module). For each, what discovery, tables, strict decoding,
// defaulting (Secret stringData → data, Namespace spec/status/label), validation and, for a kind with
// a status subresource, the status rules need.
import { type StatusCause } from './errors.js';
import { isPlainObject, type KubeObject } from './objects.js';
import { configMapSchema, namespaceSchema, secretSchema, type FieldSchema } from './schema.js';
import { AGE_COLUMN, NAME_COLUMN, ageOf, type ColumnDefinition } from './table.js';
import { STORAGE_MIGRATION_GROUP, STORAGE_MIGRATION_VERSION, storageversionmigrations } from './storage-version-migration-type.js';
import { base64ErrorOffset, metadataCauses, validateDataKey } from './validation.js';

export type ResourceName = 'secrets' | 'configmaps' | 'namespaces' | 'storageversionmigrations';

export interface ResourceType {
  /** The API group ('' for core). */
  group: string;
  version: string;
  /** `v1` (core) or `<group>/<version>`. */
  apiVersion: string;
  resource: ResourceName;
  kind: string;
  listKind: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  verbs: string[];
  schema: FieldSchema;
  columns: ColumnDefinition[];
  cells(obj: KubeObject, now: number): unknown[];
  /** Defaults and normalisation applied to every object written (create, update, patch, apply). */
  normalize(obj: KubeObject): void;
  /** Validation after normalisation; `old` on updates. */
  validate(obj: KubeObject, old?: KubeObject): StatusCause[];
  /** Decoding errors of the wire form (Secret base64), as a 400 message, or undefined. */
  decodeError?(obj: KubeObject): string | undefined;
  /** Create: server-owned fields cleared after normalisation (kube's PrepareForCreate: a new object has no status). */
  prepareForCreate?(obj: KubeObject): void;
  /** Update of the main resource: what it may not change is taken from `old` (kube's PrepareForUpdate: the status). */
  prepareForUpdate?(obj: KubeObject, old: KubeObject): void;
  /** The `status` subresource, when the kind has one. */
  status?: StatusSubresource;
}

/** How the `/status` subresource writes: everything but the status is kept from the stored object. */
export interface StatusSubresource {
  /** Takes spec and metadata (but the server-owned fields the caller restores) from `old` (kube's status PrepareForUpdate). */
  prepareForUpdate(obj: KubeObject, old: KubeObject): void;
  /** The status update's own validation (kube's ValidateStatusUpdate). */
  validate(obj: KubeObject, old: KubeObject): StatusCause[];
}

const CORE = { group: '', version: 'v1', apiVersion: 'v1' } as const;

const MAX_SECRET_BYTES = 1024 * 1024;

function stringMap(v: unknown): Record<string, string> {
  return isPlainObject(v) ? (v as Record<string, string>) : {};
}

/** Drops null entries (a null map value decodes to the zero value in Go: an empty string / no bytes). */
function dropEmptyMap(obj: KubeObject, field: string): void {
  const v = obj[field];
  if (v === null) delete obj[field];
  else if (isPlainObject(v)) {
    for (const [k, x] of Object.entries(v)) if (x === null) v[k] = '';
    if (Object.keys(v).length === 0) delete obj[field];
  }
}

function immutableCauses(obj: KubeObject, old: KubeObject | undefined, fields: string[]): StatusCause[] {
  if (!old || old['immutable'] !== true) return [];
  const causes: StatusCause[] = [];
  for (const f of fields) {
    if (JSON.stringify(obj[f] ?? {}) !== JSON.stringify(old[f] ?? {})) {
      causes.push({ reason: 'FieldValueForbidden', message: 'Forbidden: field is immutable when `immutable` is set', field: f });
    }
  }
  if (obj['immutable'] !== true) {
    causes.push({ reason: 'FieldValueForbidden', message: 'Forbidden: field is immutable when `immutable` is set', field: 'immutable' });
  }
  return causes;
}

/** The keys and annotations the built-in Secret types require (kube's ValidateSecret). */
function secretTypeCauses(obj: KubeObject): StatusCause[] {
  const data = stringMap(obj['data']);
  const requiredKey = (key: string): StatusCause[] => (key in data ? [] : [{ reason: 'FieldValueRequired', message: 'Required value', field: `data[${key}]` }]);
  switch (obj['type']) {
    case 'kubernetes.io/tls':
      return [...requiredKey('tls.crt'), ...requiredKey('tls.key')];
    case 'kubernetes.io/dockerconfigjson': {
      const causes = requiredKey('.dockerconfigjson');
      const v = data['.dockerconfigjson'];
      if (v !== undefined) {
        try {
          JSON.parse(Buffer.from(v, 'base64').toString('utf8'));
        } catch {
          causes.push({ reason: 'FieldValueInvalid', message: 'Invalid value: "<secret contents redacted>": not valid JSON', field: 'data[.dockerconfigjson]' });
        }
      }
      return causes;
    }
    case 'kubernetes.io/dockercfg':
      return requiredKey('.dockercfg');
    case 'kubernetes.io/basic-auth':
      return 'username' in data || 'password' in data ? [] : [{ reason: 'FieldValueRequired', message: 'Required value', field: 'data[username]' }];
    case 'kubernetes.io/ssh-auth':
      return requiredKey('ssh-privatekey');
    case 'kubernetes.io/service-account-token':
      return obj.metadata.annotations?.['kubernetes.io/service-account.name']
        ? []
        : [{ reason: 'FieldValueRequired', message: 'Required value', field: 'metadata.annotations[kubernetes.io/service-account.name]' }];
    default:
      return [];
  }
}

const VERBS_NAMESPACED = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];

export const secrets: ResourceType = {
  ...CORE, resource: 'secrets', kind: 'Secret', listKind: 'SecretList', singular: 'secret', namespaced: true, shortNames: [],
  verbs: VERBS_NAMESPACED, schema: secretSchema,
  columns: [
    NAME_COLUMN,
    { name: 'Type', type: 'string', format: '', priority: 0, description: 'Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types' },
    { name: 'Data', type: 'string', format: '', priority: 0, description: 'Data contains the secret data. Each key must consist of alphanumeric characters, \'-\', \'_\' or \'.\'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4' },
    AGE_COLUMN,
  ],
  cells: (o, now) => [o.metadata.name, o['type'] ?? '', Object.keys(stringMap(o['data'])).length, ageOf(o, now)],
  decodeError(obj) {
    for (const v of Object.values(stringMap(obj['data']))) {
      if (typeof v !== 'string') continue;
      const off = base64ErrorOffset(v);
      if (off >= 0) return `Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte ${off}`;
    }
    return undefined;
  },
  normalize(obj) {
    dropEmptyMap(obj, 'stringData');
    const stringData = obj['stringData'];
    if (isPlainObject(stringData)) {
      const data = isPlainObject(obj['data']) ? obj['data'] : {};
      for (const [k, v] of Object.entries(stringData)) data[k] = Buffer.from(String(v ?? ''), 'utf8').toString('base64');
      obj['data'] = data;
    }
    delete obj['stringData'];
    dropEmptyMap(obj, 'data');
    if (!obj['type']) obj['type'] = 'Opaque';
    if (obj['immutable'] === null) delete obj['immutable'];
  },
  validate(obj, old) {
    const causes = metadataCauses(obj, 'subdomain');
    let total = 0;
    for (const [k, v] of Object.entries(stringMap(obj['data']))) {
      causes.push(...validateDataKey('data', k));
      total += Buffer.byteLength(v, 'base64');
    }
    if (total > MAX_SECRET_BYTES) causes.push({ reason: 'FieldValueTooLong', message: `Too long: must have at most ${MAX_SECRET_BYTES} bytes`, field: 'data' });
    causes.push(...secretTypeCauses(obj));
    if (old && old['type'] !== obj['type']) {
      causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(obj['type'])}: field is immutable`, field: 'type' });
    }
    causes.push(...immutableCauses(obj, old, ['data']));
    return causes;
  },
};

export const configmaps: ResourceType = {
  ...CORE, resource: 'configmaps', kind: 'ConfigMap', listKind: 'ConfigMapList', singular: 'configmap', namespaced: true, shortNames: ['cm'],
  verbs: VERBS_NAMESPACED, schema: configMapSchema,
  columns: [
    NAME_COLUMN,
    { name: 'Data', type: 'string', format: '', priority: 0, description: 'Data contains the configuration data. Each key must consist of alphanumeric characters, \'-\', \'_\' or \'.\'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.' },
    AGE_COLUMN,
  ],
  cells: (o, now) => [o.metadata.name, Object.keys(stringMap(o['data'])).length + Object.keys(stringMap(o['binaryData'])).length, ageOf(o, now)],
  decodeError(obj) {
    for (const v of Object.values(stringMap(obj['binaryData']))) {
      if (typeof v !== 'string') continue;
      const off = base64ErrorOffset(v);
      if (off >= 0) return `ConfigMap in version "v1" cannot be handled as a ConfigMap: illegal base64 data at input byte ${off}`;
    }
    return undefined;
  },
  normalize(obj) {
    dropEmptyMap(obj, 'data');
    dropEmptyMap(obj, 'binaryData');
    if (obj['immutable'] === null) delete obj['immutable'];
  },
  validate(obj, old) {
    const causes = metadataCauses(obj, 'subdomain');
    const data = stringMap(obj['data']);
    const binary = stringMap(obj['binaryData']);
    let total = 0;
    for (const [k, v] of Object.entries(data)) {
      causes.push(...validateDataKey('data', k));
      total += Buffer.byteLength(v, 'utf8');
    }
    for (const [k, v] of Object.entries(binary)) {
      causes.push(...validateDataKey('binaryData', k));
      if (k in data) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(k)}: duplicate of key present in data`, field: `binaryData[${k}]` });
      total += Buffer.byteLength(v, 'base64');
    }
    if (total > MAX_SECRET_BYTES) causes.push({ reason: 'FieldValueTooLong', message: `Too long: must have at most ${MAX_SECRET_BYTES} bytes`, field: '' });
    causes.push(...immutableCauses(obj, old, ['data', 'binaryData']));
    return causes;
  },
};

export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

export const namespaces: ResourceType = {
  ...CORE, resource: 'namespaces', kind: 'Namespace', listKind: 'NamespaceList', singular: 'namespace', namespaced: false, shortNames: ['ns'],
  verbs: VERBS_NAMESPACED, schema: namespaceSchema,
  columns: [
    NAME_COLUMN,
    { name: 'Status', type: 'string', format: '', priority: 0, description: 'The status of the namespace' },
    AGE_COLUMN,
  ],
  cells: (o, now) => [o.metadata.name, (isPlainObject(o['status']) ? o['status']['phase'] : undefined) ?? '', ageOf(o, now)],
  normalize(obj) {
    delete obj.metadata.namespace;
    const spec = isPlainObject(obj['spec']) ? obj['spec'] : {};
    if (!Array.isArray(spec['finalizers']) || spec['finalizers'].length === 0) spec['finalizers'] = ['kubernetes'];
    obj['spec'] = spec;
    const status = isPlainObject(obj['status']) ? obj['status'] : {};
    if (!status['phase']) status['phase'] = obj.metadata.deletionTimestamp ? 'Terminating' : 'Active';
    obj['status'] = status;
    if (obj.metadata.name) obj.metadata.labels = { ...obj.metadata.labels, [NAMESPACE_NAME_LABEL]: obj.metadata.name };
  },
  // The namespace controller owns the status (phase, conditions): an update keeps the stored one.
  prepareForUpdate(obj, old) {
    if (isPlainObject(old['status'])) obj['status'] = old['status'];
  },
  validate(obj) {
    return metadataCauses(obj, 'label');
  },
};

/** The core/v1 kinds (served under /api/v1). */
export const CORE_RESOURCE_TYPES = { secrets, configmaps, namespaces } as const;

/** Every kind served, core and grouped. */
export const RESOURCE_TYPES: Record<ResourceName, ResourceType> = { ...CORE_RESOURCE_TYPES, storageversionmigrations };

/** A core/v1 kind by its resource name. */
export function resourceTypeOf(resource: string): ResourceType | undefined {
  return Object.prototype.hasOwnProperty.call(CORE_RESOURCE_TYPES, resource) ? CORE_RESOURCE_TYPES[resource as keyof typeof CORE_RESOURCE_TYPES] : undefined;
}

/** One served group version of a named API group (discovery and routes under /apis). */
export interface GroupVersion {
  group: string;
  version: string;
  resources: ResourceType[];
}

/** A named API group served under /apis, with its versions, preferred first. */
export interface ApiGroup {
  group: string;
  versions: GroupVersion[];
}

/** The named API groups served under /apis. */
export const API_GROUPS: ReadonlyArray<ApiGroup> = [
  { group: STORAGE_MIGRATION_GROUP, versions: [{ group: STORAGE_MIGRATION_GROUP, version: STORAGE_MIGRATION_VERSION, resources: [storageversionmigrations] }] },
];
