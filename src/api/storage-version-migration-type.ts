// storagemigration.k8s.io/v1beta1 StorageVersionMigration, the kind as kube-apiserver 1.35 serves it
// (pkg/registry/storagemigration and pkg/apis/storagemigration/validation): cluster-scoped,
// spec.resource {group, resource} required and immutable, a status of metav1.Conditions and a
// resourceVersion that the status subresource writes (a create clears the status; an update of the
// main resource keeps the stored one), and kube's table (Name, Resource). The controller that acts on
// these objects is src/controllers/storage-version-migration.
import { groupResourceString } from '../config/group-resource.js';
import {
  conditionsOf, isConditionTrue, migrationResource, PROGRESS_ANNOTATION, STORAGE_MIGRATION_API_VERSION, STORAGE_MIGRATION_GROUP,
  STORAGE_MIGRATION_VERSION, STORAGE_VERSION_MIGRATIONS, type Condition,
} from '../k8s-objects/storage-version-migration.js';
import type { StatusCause } from './errors.js';
import { isPlainObject, type JsonObject, type KubeObject } from './objects.js';
import type { ResourceType } from './resource-types.js';
import { objectMetaSchema, type FieldSchema } from './schema.js';
import { NAME_COLUMN } from './table.js';
import { dns1035LabelErrors, dns1123SubdomainErrors, invalidValue, metadataCauses, qualifiedNameErrors, required } from './validation.js';

export { STORAGE_MIGRATION_GROUP, STORAGE_MIGRATION_VERSION };

const str: FieldSchema = { type: 'string' };

const conditionSchema: FieldSchema = {
  type: 'object',
  fields: { type: str, status: str, observedGeneration: { type: 'int' }, lastTransitionTime: str, reason: str, message: str },
};

const schema: FieldSchema = {
  type: 'object',
  fields: {
    apiVersion: str, kind: str, metadata: objectMetaSchema,
    spec: { type: 'object', fields: { resource: { type: 'object', fields: { group: str, resource: str } } } },
    status: { type: 'object', fields: { conditions: { type: 'list', items: conditionSchema }, resourceVersion: str } },
  },
};

const CONDITION_STATUSES = ['False', 'True', 'Unknown'];
const CONDITION_REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;
const MAX_REASON_BYTES = 1024;
const MAX_MESSAGE_BYTES = 32 * 1024;

/** The spec as Go's %#v prints it (kube's `field is immutable` message quotes the whole spec). */
function goSpec(gr: { group: string; resource: string }): string {
  return `storagemigration.StorageVersionMigrationSpec{Resource:v1.GroupResource{Group:${JSON.stringify(gr.group)}, Resource:${JSON.stringify(gr.resource)}}}`;
}

/** ValidateStorageVersionMigration: metadata, spec.resource.resource required (a DNS-1035 label), group a DNS-1123 subdomain. */
function validateMigration(obj: KubeObject): StatusCause[] {
  const causes = metadataCauses(obj, 'subdomain');
  const { group, resource } = migrationResource(obj);
  if (resource === '') causes.push(required('spec.resource.resource', 'resource is required to be set'));
  else {
    const errs = dns1035LabelErrors(resource);
    if (errs.length) causes.push(invalidValue('spec.resource.resource', resource, errs.join(',')));
  }
  if (group !== '') {
    const errs = dns1123SubdomainErrors(group);
    if (errs.length) causes.push(invalidValue('spec.resource.group', group, errs.join(',')));
  }
  return causes;
}

/** metav1validation.ValidateConditions. */
function validateConditions(conditions: Condition[]): StatusCause[] {
  const causes: StatusCause[] = [];
  const seen = new Set<string>();
  conditions.forEach((c, i) => {
    const at = `status.conditions[${i}]`;
    const type = typeof c.type === 'string' ? c.type : '';
    if (seen.has(type)) causes.push({ reason: 'FieldValueDuplicate', message: `Duplicate value: ${JSON.stringify(type)}`, field: `${at}.type` });
    seen.add(type);
    for (const e of qualifiedNameErrors(type)) causes.push(invalidValue(`${at}.type`, type, e));
    if (!CONDITION_STATUSES.includes(String(c.status))) {
      causes.push({
        reason: 'FieldValueNotSupported',
        message: `Unsupported value: ${JSON.stringify(String(c.status ?? ''))}: supported values: ${CONDITION_STATUSES.map((v) => JSON.stringify(v)).join(', ')}`,
        field: `${at}.status`,
      });
    }
    if (typeof c.observedGeneration === 'number' && c.observedGeneration < 0) {
      causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${c.observedGeneration}: must be greater than or equal to zero`, field: `${at}.observedGeneration` });
    }
    if (!c.lastTransitionTime) causes.push(required(`${at}.lastTransitionTime`, 'must be set'));
    const reason = typeof c.reason === 'string' ? c.reason : '';
    if (reason === '') causes.push(required(`${at}.reason`, 'must be set'));
    else {
      if (!CONDITION_REASON.test(reason)) {
        causes.push(invalidValue(`${at}.reason`, reason,
          "a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName',  or 'ReasonA,ReasonB',  or 'ReasonA:ReasonB', regex used for validation is '[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?')"));
      }
      if (Buffer.byteLength(reason) > MAX_REASON_BYTES) causes.push({ reason: 'FieldValueTooLong', message: `Too long: may not be more than ${MAX_REASON_BYTES} bytes`, field: `${at}.reason` });
    }
    if (typeof c.message === 'string' && Buffer.byteLength(c.message) > MAX_MESSAGE_BYTES) {
      causes.push({ reason: 'FieldValueTooLong', message: `Too long: may not be more than ${MAX_MESSAGE_BYTES} bytes`, field: `${at}.message` });
    }
  });
  return causes;
}

function statusResourceVersion(obj: KubeObject): string {
  const status = isPlainObject(obj['status']) ? obj['status'] : {};
  return typeof status['resourceVersion'] === 'string' ? status['resourceVersion'] : '';
}

/** ValidateStorageVersionMigrationStatusUpdate: conditions, the resourceVersion, and the one-way Succeeded/Failed rules. */
function validateStatusUpdate(obj: KubeObject, old: KubeObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const rv = statusResourceVersion(obj);
  if (rv !== '' && !/^[0-9]+$/.test(rv)) {
    causes.push(invalidValue('status.resourceVersion', rv, `failed to parse resource version ${JSON.stringify(rv)}: strconv.ParseInt: parsing ${JSON.stringify(rv)}: invalid syntax`));
  }
  const conditions = conditionsOf(obj);
  causes.push(...validateConditions(conditions));
  const oldRv = statusResourceVersion(old);
  if (oldRv !== '' && oldRv !== rv) causes.push(invalidValue('status.resourceVersion', rv, 'field is immutable'));
  const conditionsCause = (detail: string): StatusCause => ({
    reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(conditions)}: ${detail}`, field: 'status.conditions',
  });
  const succeeded = isConditionTrue(obj, 'Succeeded');
  const failed = isConditionTrue(obj, 'Failed');
  const running = isConditionTrue(obj, 'Running');
  if (succeeded && failed) causes.push(conditionsCause('Both success and failed conditions cannot be true at the same time'));
  if (succeeded && running) causes.push(conditionsCause('Running condition cannot be true when success condition is true'));
  if (failed && running) causes.push(conditionsCause('Running condition cannot be true when failed condition is true'));
  if (isConditionTrue(old, 'Succeeded') && !succeeded) causes.push(conditionsCause('Success condition cannot be set to false once it is true'));
  if (isConditionTrue(old, 'Failed') && !failed) causes.push(conditionsCause('Failed condition cannot be set to false once it is true'));
  return causes;
}

/**
 * The controller's resume point (PROGRESS_ANNOTATION) is written by the controller alone, like the
 * status: a client's create or update can neither set nor change it (a forged position could skip
 * keys and report Succeeded for objects never looked at).
 */
function keepProgress(obj: KubeObject, old: KubeObject | undefined): void {
  const meta = obj.metadata as Record<string, unknown>;
  const annotations = isPlainObject(meta['annotations']) ? { ...meta['annotations'] } : {};
  const stored = old && isPlainObject(old.metadata['annotations']) ? old.metadata['annotations'][PROGRESS_ANNOTATION] : undefined;
  if (stored === undefined) delete annotations[PROGRESS_ANNOTATION];
  else annotations[PROGRESS_ANNOTATION] = stored;
  if (Object.keys(annotations).length > 0) meta['annotations'] = annotations;
  else delete meta['annotations'];
}

/** Go zero values as kube writes them: spec.resource {group, resource} always present, status {} at least. */
function normalize(obj: KubeObject): void {
  delete obj.metadata.namespace; // cluster-scoped: kube clears a namespace sent in the body
  const spec: JsonObject = isPlainObject(obj['spec']) ? obj['spec'] : {};
  const { group, resource } = migrationResource(obj);
  spec['resource'] = { group, resource };
  obj['spec'] = spec;
  if (!isPlainObject(obj['status'])) obj['status'] = {};
}

export const storageversionmigrations: ResourceType = {
  group: STORAGE_MIGRATION_GROUP, version: STORAGE_MIGRATION_VERSION, apiVersion: STORAGE_MIGRATION_API_VERSION,
  resource: STORAGE_VERSION_MIGRATIONS, kind: 'StorageVersionMigration', listKind: 'StorageVersionMigrationList',
  singular: 'storageversionmigration', namespaced: false, shortNames: [],
  verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
  schema,
  // kube's printer: Name (without the `name` format) and the resource it migrates, no Age.
  columns: [
    { ...NAME_COLUMN, format: '' },
    { name: 'Resource', type: 'string', format: '', priority: 0, description: 'Fully qualified resource to migrate' },
  ],
  // spec.resource.resource is a validated DNS-1035 label, never `*`: this is GroupResource.String().
  cells: (o) => [o.metadata.name, groupResourceString(migrationResource(o))],
  normalize,
  prepareForCreate(obj) {
    obj['status'] = {};
    keepProgress(obj, undefined);
  },
  prepareForUpdate(obj, old) {
    obj['status'] = isPlainObject(old['status']) ? old['status'] : {};
    keepProgress(obj, old);
  },
  validate(obj, old) {
    const causes = validateMigration(obj);
    if (old) {
      const before = migrationResource(old);
      const after = migrationResource(obj);
      if (before.group !== after.group || before.resource !== after.resource) causes.push({ reason: 'FieldValueInvalid', message: `Invalid value: ${goSpec(after)}: field is immutable`, field: 'spec' });
    }
    return causes;
  },
  status: {
    prepareForUpdate(obj, old) {
      obj['spec'] = old['spec'] ?? {};
      // metav1.ResetObjectMetaForStatus: labels, annotations, finalizers and owners are the main resource's.
      const meta = obj.metadata as Record<string, unknown>;
      for (const f of ['labels', 'annotations', 'finalizers', 'ownerReferences', 'deletionTimestamp', 'generation']) {
        if (old.metadata[f] === undefined) delete meta[f];
        else meta[f] = old.metadata[f];
      }
    },
    validate: validateStatusUpdate,
  },
};
