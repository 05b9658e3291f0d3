// The REST verbs for every kind: get, list, create, update (PUT), patch (merge, strategic, JSON,
// apply), delete, and get/update/patch of the `status` subresource of a kind that has one. Pure
// request → reply functions over the ObjectRepository; the HTTP layer (server.ts) does bodies, auth
// and encoding, watch.ts does streams, and list-handler.ts reads lists (paged, Table or streamed).
import { randomUUID } from 'node:crypto';
import { groupResourceString } from '../config/group-resource.js';
import type { Logger } from '../log.js';
import { isStoreError } from '../storage/errors.js';
import { DEFAULT_MAX_BODY_BYTES, MAX_NESTING_DEPTH, yamlBodyLimits } from './body-limits.js';
import { checkObject, decodeBody, fieldValidationOf, mediaType, parseJson, parseYaml, type FieldValidation } from './decode.js';
import { ListHandler, TABLE_CONTENT_TYPE } from './list-handler.js';
import { ApiError, badRequest, conflict, forbidden, invalid, notFound, unsupportedMediaType, type StatusCause } from './errors.js';
import { corruptCauses } from './corrupt-objects.js';
import { defaultFeatureGates, type FeatureGates } from './feature-gates.js';
import type { NamespaceLookup } from './namespace-cache.js';
import { checkNamespace, createInNamespace, deleteNamespaceContents, namespaceDeletionConditions, namespaceHasContent, UNDELETABLE_NAMESPACES, type NamespaceContentCorruption } from './namespaces.js';
import type { ObjectRepository, StoredObject } from './object-repository.js';
import { cloneJson, isPlainObject, jsonEqual, rfc3339Seconds, type Json, type KubeObject } from './objects.js';
import { serverSideApply } from './patch/apply.js';
import { trackUpdate } from './patch/managed-fields.js';
import { applyJsonPatch, type JsonPatchLimits } from './patch/json-patch.js';
import { applyMergePatch } from './patch/json-merge-patch.js';
import { applyStrategicMergePatch } from './patch/strategic-merge-patch.js';
import { namespaces, type ResourceType } from './resource-types.js';
import type { Matcher } from './selectors.js';
import { tableOf } from './table.js';
import { YamlDecoder } from './yaml/decoder.js';

export interface ResourceRequest {
  rt: ResourceType;
  /** URL namespace (namespaced kinds; undefined for an all-namespaces list). */
  namespace?: string;
  name?: string;
  /** `status`: the request is on the object's status subresource (the kind has one). */
  subresource?: 'status';
  query: URLSearchParams;
  body: Buffer;
  contentType?: string;
  /** Accept asked for a meta.k8s.io/v1 Table. */
  wantTable: boolean;
  /** Collected `Warning` texts (unknown fields with fieldValidation=Warn). */
  warnings: string[];
  /** The field manager of writes: `fieldManager`, else derived from the User-Agent (kube's rule). */
  fieldManager: string;
}

export interface Reply {
  code: number;
  body: unknown;
  contentType?: string;
}

const PATCH_TYPES = 'application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json';
const MAX_UPDATE_RETRIES = 5;
const GENERATE_CHARS = 'bcdfghjklmnpqrstvwxz2456789';

export interface ResourceHandlerDeps {
  repo: ObjectRepository;
  log: Logger;
  now?: () => number;
  /** `--feature-gates` (default: every gate at kube's default). */
  featureGates?: FeatureGates;
  /** list-handler's STREAM_BUFFER_CHARS unless given (tests make it small to reach the scan-then-stream path). */
  listBufferChars?: number;
  /** The watched namespaces (etcd): creates check their namespace without a store read. */
  namespaceCache?: NamespaceLookup;
  /** `--max-request-body-bytes` (default 3 MiB): bounds the bytes a JSON patch's copies add and, without `yamlDecoder`, what a YAML body may expand to. */
  maxBodyBytes?: number;
  /** Decodes YAML bodies off the event loop, bounded (default: one with the limits of maxBodyBytes, started on first use). */
  yamlDecoder?: YamlDecoder;
}

export class ResourceHandlers {
  private readonly repo: ObjectRepository;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly gates: FeatureGates;
  private readonly lists: ListHandler;
  private readonly namespaceCache: NamespaceLookup | undefined;
  private readonly yaml: YamlDecoder;
  private readonly patchLimits: JsonPatchLimits;

  constructor(deps: ResourceHandlerDeps) {
    const maxBodyBytes = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.yaml = deps.yamlDecoder ?? new YamlDecoder({ ...yamlBodyLimits(maxBodyBytes), log: deps.log });
    this.patchLimits = { maxCopyBytes: maxBodyBytes, maxDepth: MAX_NESTING_DEPTH };
    this.repo = deps.repo;
    this.namespaceCache = deps.namespaceCache;
    this.now = deps.now ?? Date.now;
    this.log = deps.log;
    this.gates = deps.featureGates ?? defaultFeatureGates();
    this.lists = new ListHandler({ repo: this.repo, now: this.now, ...(deps.listBufferChars !== undefined ? { listBufferChars: deps.listBufferChars } : {}) });
  }

  // ---------------------------------------------------------------- reads

  async get(req: ResourceRequest): Promise<Reply> {
    const name = req.name as string;
    const cur = await this.repo.get(req.rt, req.namespace, name);
    if (!cur) throw notFound(req.rt.resource, name, req.rt.group);
    return this.objectReply(req, 200, cur.obj);
  }

  list(req: ResourceRequest): Promise<Reply> {
    return this.lists.list(req);
  }

  /** Every object `matches` accepts, at one revision (a watch's initial state; the watch parsed its selectors). */
  listAll(req: ResourceRequest, matches: Matcher): Promise<{ revision: number; items: KubeObject[] }> {
    return this.lists.listAll(req, matches);
  }

  // ---------------------------------------------------------------- writes

  async create(req: ResourceRequest): Promise<Reply> {
    const { rt } = req;
    const validation = fieldValidationOf(req.query);
    const obj = checkObject(rt, await decodeBody(req.body, req.contentType, this.yaml), validation, req.warnings);
    return this.createObject(req, obj);
  }

  private async createObject(req: ResourceRequest, obj: KubeObject, op: 'Update' | 'Apply' = 'Update'): Promise<Reply> {
    const { rt } = req;
    const meta = obj.metadata;
    if (rt.namespaced) {
      if (meta.namespace && req.namespace && meta.namespace !== req.namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      meta.namespace = req.namespace;
    }
    if (!meta.name && meta.generateName) {
      let suffix = '';
      for (let i = 0; i < 5; i++) suffix += GENERATE_CHARS[Math.floor(Math.random() * GENERATE_CHARS.length)];
      meta.name = meta.generateName + suffix;
    }
    for (const f of ['uid', 'resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink', 'generation'] as const) delete meta[f];
    meta.uid = randomUUID();
    meta.creationTimestamp = rfc3339Seconds(this.now());
    rt.normalize(obj);
    rt.prepareForCreate?.(obj);
    if (op === 'Update') trackUpdate(undefined, obj, req.fieldManager, meta.creationTimestamp);
    this.validate(rt, obj);
    const nsRevision = rt.namespaced ? await checkNamespace(this.repo, this.namespaceCache, req.namespace as string) : 0;
    const reordered = orderMetadata(obj);
    if (isDryRun(req.query)) return this.objectReply(req, 201, reordered);
    const created = rt.namespaced
      ? await createInNamespace(this.repo, rt, reordered, nsRevision)
      : await this.repo.create(rt, reordered);
    return this.objectReply(req, 201, created);
  }

  async update(req: ResourceRequest): Promise<Reply> {
    const { rt } = req;
    const name = req.name as string;
    const obj = checkObject(rt, await decodeBody(req.body, req.contentType, this.yaml), fieldValidationOf(req.query), req.warnings);
    if (obj.metadata.name !== undefined && obj.metadata.name !== name) {
      throw badRequest(`the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`);
    }
    if (rt.namespaced && obj.metadata.namespace && obj.metadata.namespace !== req.namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    const wanted = obj.metadata.resourceVersion;
    const result = await this.guaranteedUpdate(req, (cur) => {
      if (wanted && wanted !== String(cur.revision)) throw conflict(rt.resource, name, rt.group);
      return obj;
    });
    return this.objectReply(req, 200, result);
  }

  async patch(req: ResourceRequest): Promise<Reply> {
    const { rt } = req;
    const name = req.name as string;
    const type = mediaType(req.contentType);
    const validation = fieldValidationOf(req.query);
    if (type === 'application/apply-patch+yaml') return this.apply(req, validation);
    let patchFn: (cur: Json) => Json;
    const patch = parseJson(req.body);
    switch (type) {
      case 'application/merge-patch+json':
        patchFn = (cur) => applyMergePatch(cur, patch);
        break;
      case 'application/strategic-merge-patch+json':
        patchFn = (cur) => applyStrategicMergePatch(cur as never, patch);
        break;
      case 'application/json-patch+json':
        patchFn = (cur) => applyJsonPatch(cur, patch, this.patchLimits);
        break;
      default:
        throw unsupportedMediaType(`the body of the request was in an unknown format - accepted media types include: ${PATCH_TYPES}`);
    }
    const result = await this.guaranteedUpdate(req, (cur) => {
      const warnings: string[] = [];
      const patched = checkObject(rt, patchFn(cloneJson(cur.obj) as unknown as Json), validation, warnings);
      if (patched.metadata.name !== name) throw badRequest(`the name of the object (${patched.metadata.name ?? ''}) does not match the name on the URL (${name})`);
      if (patched.metadata.resourceVersion && patched.metadata.resourceVersion !== String(cur.revision)) throw conflict(rt.resource, name, rt.group);
      req.warnings.splice(0, req.warnings.length, ...warnings);
      return patched;
    });
    return this.objectReply(req, 200, result);
  }

  private async apply(req: ResourceRequest, validation: FieldValidation): Promise<Reply> {
    const { rt } = req;
    const name = req.name as string;
    const manager = req.query.get('fieldManager');
    if (!manager) {
      throw new ApiError(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch', {
        kind: 'PatchOptions', group: 'meta.k8s.io', causes: [{ reason: 'FieldValueRequired', message: 'Required value: is required for apply patch', field: 'fieldManager' }],
      });
    }
    const applied = checkObject(rt, await parseYaml(req.body, this.yaml), validation, req.warnings);
    if (applied.metadata.name !== name) {
      throw badRequest(`the name of the object (${applied.metadata.name ?? ''}) does not match the name on the URL (${name})`);
    }
    if (rt.namespaced && applied.metadata.namespace && applied.metadata.namespace !== req.namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    const now = rfc3339Seconds(this.now());
    const force = req.query.get('force') === 'true';
    for (let attempt = 0; ; attempt++) {
      const cur = await this.repo.get(rt, req.namespace, name);
      if (!cur) {
        if (req.subresource) throw notFound(rt.resource, name, rt.group); // a subresource is never created
        try {
          return await this.createObject(req, serverSideApply(undefined, applied, manager, now, force), 'Apply');
        } catch (err) {
          if (isStoreError(err, 'KEY_EXISTS') && attempt < MAX_UPDATE_RETRIES) continue;
          throw err;
        }
      }
      try {
        const result = await this.writeUpdate(req, cur, serverSideApply(cur.obj, applied, manager, now, force), 'Apply');
        return this.objectReply(req, 200, result);
      } catch (err) {
        if ((isStoreError(err, 'CONFLICT') || isStoreError(err, 'NOT_FOUND')) && attempt < MAX_UPDATE_RETRIES) continue;
        throw err;
      }
    }
  }

  /**
   * Read, mutate, write at the read revision; a concurrent write makes it start over (kube's
   * GuaranteedUpdate). The mutation decides preconditions (a stale resourceVersion → 409).
   */
  private async guaranteedUpdate(req: ResourceRequest, mutate: (cur: StoredObject) => KubeObject): Promise<KubeObject> {
    const { rt } = req;
    const name = req.name as string;
    for (let attempt = 0; ; attempt++) {
      const cur = await this.repo.get(rt, req.namespace, name);
      if (!cur) throw notFound(rt.resource, name, rt.group);
      try {
        return await this.writeUpdate(req, cur, mutate(cur));
      } catch (err) {
        if (isStoreError(err, 'CONFLICT') && attempt < MAX_UPDATE_RETRIES) continue;
        if (isStoreError(err, 'NOT_FOUND')) throw notFound(rt.resource, name, rt.group);
        throw err;
      }
    }
  }

  /**
   * Carries the server-owned metadata over, normalises and validates, then writes unless nothing
   * changed and the stored value is current (an unchanged object keeps its resourceVersion; a stale
   * one is rewritten with the current write provider: that is how `replace` re-encrypts). On the
   * status subresource only the status is taken from `next` and the status rules validate it.
   */
  private async writeUpdate(req: ResourceRequest, cur: StoredObject, next: KubeObject, op: 'Update' | 'Apply' = 'Update'): Promise<KubeObject> {
    const { rt } = req;
    const obj = cloneJson(next);
    const meta = obj.metadata;
    const old = cur.obj.metadata;
    meta.name = old.name;
    if (rt.namespaced) meta.namespace = old.namespace;
    meta.uid = old.uid;
    meta.creationTimestamp = old.creationTimestamp;
    if (old.deletionTimestamp) meta.deletionTimestamp = old.deletionTimestamp;
    else delete meta.deletionTimestamp;
    if (meta.managedFields === undefined && old.managedFields !== undefined) meta.managedFields = old.managedFields;
    if (Array.isArray(meta.managedFields) && meta.managedFields.length === 0) delete meta.managedFields;
    delete meta.generation;
    delete meta.selfLink;
    rt.normalize(obj);
    const status = req.subresource === 'status' ? rt.status : undefined;
    if (status) status.prepareForUpdate(obj, cur.obj);
    else rt.prepareForUpdate?.(obj, cur.obj);
    if (op === 'Update') trackUpdate(cur.obj, obj, req.fieldManager, rfc3339Seconds(this.now()));
    if (status) this.throwInvalid(rt, obj, status.validate(obj, cur.obj));
    else this.validate(rt, obj, cur.obj);
    const ordered = orderMetadata(obj);
    const unchanged = jsonEqual(JSON.parse(cur.plaintext.toString('utf8')), JSON.parse(this.repo.serialize(rt, ordered).toString('utf8')));
    if (unchanged && !cur.stale) return cur.obj;
    if (isDryRun(req.query)) return { ...ordered, metadata: { ...ordered.metadata, resourceVersion: String(cur.revision) } };
    if (cur.stale) this.log.debug({ resource: rt.resource, namespace: meta.namespace, name: meta.name }, 'rewriting a stale stored value');
    return this.repo.update(rt, ordered, cur.revision);
  }

  async delete(req: ResourceRequest): Promise<Reply> {
    const { rt } = req;
    const name = req.name as string;
    const options = this.deleteOptions(req);
    const dryRun = isDryRun(req.query) || (Array.isArray(options['dryRun']) && options['dryRun'].includes('All'));
    // Without the gate kube drops the option before anything else (handlers/delete.go): a corrupt
    // object then fails the normal path below with its 500, a readable one is deleted normally.
    if (this.gates.AllowUnsafeMalformedObjectDeletion && options['ignoreStoreReadErrorWithClusterBreakingPotential'] === true) {
      return this.unsafeDelete(req, dryRun);
    }
    const cur = await this.repo.get(rt, req.namespace, name);
    if (!cur) throw notFound(rt.resource, name, rt.group);
    const pre = isPlainObject(options['preconditions']) ? options['preconditions'] : {};
    if (typeof pre['uid'] === 'string' && pre['uid'] !== cur.obj.metadata.uid) {
      throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${groupResourceString(rt)} "${name}": Precondition failed: UID in precondition: ${pre['uid']}, UID in object meta: ${cur.obj.metadata.uid ?? ''}`, { name, ...groupOf(rt), kind: rt.resource });
    }
    if (typeof pre['resourceVersion'] === 'string' && pre['resourceVersion'] !== String(cur.revision)) {
      throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${groupResourceString(rt)} "${name}": Precondition failed: ResourceVersion in precondition: ${pre['resourceVersion']}, ResourceVersion in object meta: ${cur.revision}`, { name, ...groupOf(rt), kind: rt.resource });
    }
    if (rt.resource === 'namespaces') return this.deleteNamespace(req, cur, dryRun);
    if (!dryRun) {
      try {
        await this.repo.delete(rt, req.namespace, name, cur.revision);
      } catch (err) {
        if (isStoreError(err, 'CONFLICT')) return this.delete(req);
        throw err;
      }
    }
    return {
      code: 200,
      body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, ...groupOf(rt), kind: rt.resource, uid: cur.obj.metadata.uid } },
    };
  }

  /**
   * KEP-3926's unsafe delete (`ignoreStoreReadErrorWithClusterBreakingPotential: true` with the
   * AllowUnsafeMalformedObjectDeletion gate): only for an object whose stored value does not decrypt
   * or decode; it is removed by key without being read, so preconditions, finalizers and the
   * namespace's contents are not looked at (kube's registry corruptObjectDeleter). A readable object
   * is refused with kube's 422. The delete is made at the corrupt value's revision, so a value
   * rewritten meanwhile (the object recreated, the key restored) is not removed blindly. Dry run
   * reports without deleting.
   */
  private async unsafeDelete(req: ResourceRequest, dryRun: boolean): Promise<Reply> {
    const { rt } = req;
    const name = req.name as string;
    for (let attempt = 0; ; attempt++) {
      const read = await this.repo.read(rt, req.namespace, name);
      if (read.state === 'missing') throw notFound(rt.resource, name, rt.group);
      if (read.state === 'ok') {
        throw invalid(rt.resource, name, [{
          reason: 'FieldValueInvalid',
          message: 'Invalid value: true: is exclusively used to delete corrupt object(s), try again by removing this option',
          field: 'ignoreStoreReadErrorWithClusterBreakingPotential',
        }]);
      }
      if (!dryRun) {
        try {
          await this.repo.delete(rt, req.namespace, name, read.revision);
        } catch (err) {
          if (isStoreError(err, 'CONFLICT') && attempt < MAX_UPDATE_RETRIES) continue;
          throw err;
        }
        this.log.warn({ key: read.corrupt.key, type: read.corrupt.type, reason: read.corrupt.reason }, 'unsafe delete of a corrupt object (ignoreStoreReadErrorWithClusterBreakingPotential)');
        // The namespace controller's retry: a Terminating namespace this object was blocking is finished now if it can be.
        if (rt.namespaced && req.namespace) await this.retryTerminatingNamespace(req.namespace);
      }
      return { code: 200, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 200, details: { name, kind: rt.kind } } };
    }
  }

  /**
   * Finishes a Terminating namespace once nothing is left in it; leaves it as it is otherwise. Its
   * readable contents went when it was marked (and nothing can be created in it since), so what is
   * left is what blocked it: one key read per kind tells whether this delete removed the last of it.
   * Re-running the content deletion here instead read the whole namespace on every unsafe delete
   * (O(n²) for an operator removing n corrupt objects). The conditions keep naming the keys found
   * by the last full pass until the namespace is deleted again (`kubectl delete namespace` re-runs it).
   */
  private async retryTerminatingNamespace(namespace: string): Promise<void> {
    try {
      const ns = await this.repo.get(namespaces, undefined, namespace);
      if (!ns?.obj.metadata.deletionTimestamp) return;
      if (await namespaceHasContent(this.repo, namespace)) return;
      await this.repo.delete(namespaces, undefined, namespace, ns.revision);
      this.log.info({ namespace }, 'terminating namespace deleted once its last corrupt object was removed');
    } catch (err) {
      this.log.warn({ namespace, err: err instanceof Error ? err.message : String(err) }, 'could not finish the terminating namespace');
    }
  }

  private async deleteNamespace(req: ResourceRequest, cur: StoredObject, dryRun: boolean): Promise<Reply> {
    const name = req.name as string;
    if (UNDELETABLE_NAMESPACES.has(name)) throw forbidden('namespaces', name, 'this namespace may not be deleted');
    const terminating = cloneJson(cur.obj);
    terminating.metadata.deletionTimestamp = terminating.metadata.deletionTimestamp ?? rfc3339Seconds(this.now());
    terminating['status'] = { ...(isPlainObject(cur.obj['status']) ? cur.obj['status'] : {}), phase: 'Terminating' };
    if (dryRun) return this.objectReply(req, 200, terminating);
    let marked = cur.obj;
    if (!cur.obj.metadata.deletionTimestamp) {
      try {
        marked = await this.repo.update(req.rt, orderMetadata(terminating), cur.revision);
      } catch (err) {
        if (isStoreError(err, 'CONFLICT')) return this.delete(req);
        throw err;
      }
    }
    const { deleted, corrupt } = await deleteNamespaceContents(this.repo, name);
    if (corrupt.byResource.size > 0) {
      // kube's namespace controller would retry for ever (and `kubectl delete` wait for ever): the
      // namespace stays Terminating with its conditions naming the blocking keys, and the request
      // fails with the same text instead of hanging.
      const message = await this.recordNamespaceFailure(name, corrupt);
      const counts = Object.fromEntries([...corrupt.byResource].map(([resource, found]) => [resource, `${found.size}${found.truncated ? '+' : ''}`]));
      this.log.warn({ namespace: name, objects: deleted, corrupt: counts }, 'namespace deletion blocked by corrupt objects');
      throw new ApiError(500, 'StoreReadError', `namespace "${name}" is stuck Terminating: ${message}`, {
        name, kind: 'namespaces',
        causes: [...corrupt.byResource.values()].flatMap(corruptCauses),
      });
    }
    await this.repo.delete(req.rt, undefined, name);
    this.log.info({ namespace: name, objects: deleted }, 'namespace deleted with its contents');
    return this.objectReply(req, 200, marked);
  }

  /** Writes kube's namespace-deleter conditions on the Terminating namespace; returns the ContentDeletionFailed message. */
  private async recordNamespaceFailure(name: string, corrupt: NamespaceContentCorruption): Promise<string> {
    const { conditions, message } = namespaceDeletionConditions(corrupt, rfc3339Seconds(this.now()));
    for (let attempt = 0; attempt < MAX_UPDATE_RETRIES; attempt++) {
      const cur = await this.repo.get(namespaces, undefined, name);
      if (!cur) break;
      const next = cloneJson(cur.obj);
      next['status'] = { ...(isPlainObject(cur.obj['status']) ? cur.obj['status'] : {}), phase: 'Terminating', conditions };
      try {
        await this.repo.update(namespaces, orderMetadata(next), cur.revision);
        break;
      } catch (err) {
        if (!isStoreError(err, 'CONFLICT')) throw err;
      }
    }
    return message;
  }

  /** DeleteOptions: the body when there is one, else the query parameters (kube's DeleteResource). */
  private deleteOptions(req: ResourceRequest): Record<string, Json> {
    const unsafe = 'ignoreStoreReadErrorWithClusterBreakingPotential';
    if (req.body.length === 0 || req.body.toString('utf8').trim() === '') {
      const raw = req.query.get(unsafe);
      if (raw === null) return {};
      if (raw !== 'true' && raw !== 'false') throw badRequest(`${unsafe}: invalid value ${JSON.stringify(raw)}: must be true or false`);
      return { [unsafe]: raw === 'true' };
    }
    const v = parseJson(req.body);
    if (v === null) return {};
    if (!isPlainObject(v)) throw badRequest('DeleteOptions must be a JSON object');
    if (v[unsafe] !== undefined && v[unsafe] !== null && typeof v[unsafe] !== 'boolean') {
      throw badRequest(`json: cannot unmarshal ${typeof v[unsafe]} into Go struct field DeleteOptions.${unsafe} of type bool`);
    }
    return v;
  }

  private validate(rt: ResourceType, obj: KubeObject, old?: KubeObject): void {
    this.throwInvalid(rt, obj, rt.validate(obj, old));
  }

  private throwInvalid(rt: ResourceType, obj: KubeObject, causes: StatusCause[]): void {
    if (causes.length > 0) throw invalid(rt.kind, obj.metadata.name ?? obj.metadata.generateName ?? '', causes, rt.group);
  }

  objectReply(req: ResourceRequest, code: number, obj: KubeObject): Reply {
    if (req.wantTable) {
      const now = this.now();
      return {
        code,
        body: tableOf(req.rt.columns, (o) => req.rt.cells(o, now), [obj], { resourceVersion: obj.metadata.resourceVersion ?? '' }),
        contentType: TABLE_CONTENT_TYPE,
      };
    }
    return { code, body: obj };
  }
}

/** `group` of a Status's details, for a kind of a named group. */
function groupOf(rt: ResourceType): { group?: string } {
  return rt.group ? { group: rt.group } : {};
}

export function isDryRun(query: URLSearchParams): boolean {
  const values = query.getAll('dryRun');
  for (const v of values) if (v !== 'All') throw badRequest(`dryRun: Unsupported value: ${JSON.stringify(v)}: supported values: "All"`);
  return values.length > 0;
}

/** kind, apiVersion, metadata first (the order kube writes), metadata fields in kube's order. */
function orderMetadata(obj: KubeObject): KubeObject {
  const { kind, apiVersion, metadata, ...rest } = obj;
  const order = ['name', 'generateName', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp',
    'deletionGracePeriodSeconds', 'labels', 'annotations', 'ownerReferences', 'finalizers', 'managedFields'];
  const meta: Record<string, unknown> = {};
  for (const k of order) if (metadata[k] !== undefined && metadata[k] !== null) meta[k] = metadata[k];
  // Empty maps and lists are omitted, as Go's omitempty does.
  for (const k of ['labels', 'annotations', 'finalizers', 'ownerReferences', 'managedFields']) {
    const v = meta[k];
    if ((Array.isArray(v) && v.length === 0) || (isPlainObject(v) && Object.keys(v).length === 0)) delete meta[k];
  }
  for (const [k, v] of Object.entries(metadata)) if (!(k in meta) && v !== undefined && v !== null) meta[k] = v;
  return { ...(kind ? { kind } : {}), ...(apiVersion ? { apiVersion } : {}), metadata: meta as KubeObject['metadata'], ...rest } as KubeObject;
}
