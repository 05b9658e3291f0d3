// Kubernetes protobuf objects (`application/vnd.kubernetes.protobuf`), as kubectl sends them and as
// kube-apiserver stores them in etcd: the magic `k8s\0`, then a runtime.Unknown {1 typeMeta{1
// apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType}; `raw` is the message chosen by
// kind. A small hand decoder for the few core/v1 messages we need (Secret, ConfigMap, Namespace;
// field numbers from k8s.io/api and k8s.io/apimachinery generated.proto), producing the JSON object
// kubectl would show. Zero values Go writes explicitly are dropped; unknown fields are skipped.
//
// Why here and not in src/api: both the API server (request bodies, values kube-apiserver stored)
// and the offline tools (`atrest decrypt -o json`) decode these objects, and tools may not import
// the API layer. Like src/gen this module is a leaf: pure functions, no I/O, nothing of ours but
// src/errors.ts.
import { AtrestError } from '../errors.js';
import { rfc3339Seconds, type Json, type JsonObject, type KubeObject, type ObjectMeta } from './object-model.js';

export type { Json, JsonObject, ObjectMeta, KubeObject } from './object-model.js';

export const PROTOBUF_MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/**
 * Codes: PROTOBUF_NOT_K8S (no `k8s\0` magic), PROTOBUF_MALFORMED (bad wire data),
 * PROTOBUF_CONTENT_ENCODING (an encoded `raw`), PROTOBUF_UNSUPPORTED_KIND (not one we decode).
 */
export class ProtobufObjectError extends AtrestError {}

/** The runtime.Unknown envelope of a Kubernetes protobuf object. */
export interface ProtobufEnvelope {
  apiVersion: string;
  kind: string;
  raw: Buffer;
  contentEncoding: string;
  contentType: string;
}

interface Field {
  no: number;
  wire: number;
  /** varint / fixed value */
  num?: bigint;
  /** length-delimited payload */
  bytes?: Buffer;
}

class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}

  private varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++] as number;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw new Error('varint too long');
    }
  }

  *fields(): Generator<Field> {
    while (this.pos < this.buf.length) {
      const tag = Number(this.varint());
      const no = tag >>> 3;
      const wire = tag & 7;
      if (no === 0) throw new Error('field number 0');
      switch (wire) {
        case 0:
          yield { no, wire, num: this.varint() };
          break;
        case 1: {
          if (this.pos + 8 > this.buf.length) throw new Error('truncated fixed64');
          const num = this.buf.readBigUInt64LE(this.pos);
          this.pos += 8;
          yield { no, wire, num };
          break;
        }
        case 2: {
          const len = Number(this.varint());
          if (this.pos + len > this.buf.length) throw new Error('truncated length-delimited field');
          const bytes = this.buf.subarray(this.pos, this.pos + len);
          this.pos += len;
          yield { no, wire, bytes };
          break;
        }
        case 5: {
          if (this.pos + 4 > this.buf.length) throw new Error('truncated fixed32');
          const num = BigInt(this.buf.readUInt32LE(this.pos));
          this.pos += 4;
          yield { no, wire, num };
          break;
        }
        default:
          throw new Error(`unsupported wire type ${wire}`);
      }
    }
  }
}

/** Sets a map entry; defineProperty so that a key such as `__proto__` (a valid Secret key) is kept as data. */
function put(map: Record<string, string>, key: string, value: string): void {
  Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
}

const text = (f: Field): string => (f.bytes ?? Buffer.alloc(0)).toString('utf8');
const fields = (b: Buffer | undefined): Generator<Field> => new Reader(b ?? Buffer.alloc(0)).fields();
const int64 = (f: Field): number => Number(BigInt.asIntN(64, f.num ?? 0n));

/** Adds a map<string, string|bytes> entry (a message {1 key, 2 value}) to `map`; bytes values as base64, as JSON has them. */
function putEntry(map: Record<string, string>, f: Field, valueAs: 'string' | 'base64'): void {
  let key = '';
  let value: Buffer = Buffer.alloc(0);
  for (const e of fields(f.bytes)) {
    if (e.no === 1 && e.bytes) key = text(e);
    else if (e.no === 2 && e.bytes) value = e.bytes;
  }
  put(map, key, valueAs === 'base64' ? value.toString('base64') : value.toString('utf8'));
}

/** metav1.Time {1 seconds, 2 nanos}; the zero time is "unset". */
function time(b: Buffer | undefined): string | undefined {
  let seconds = 0n;
  for (const f of fields(b)) if (f.no === 1 && f.num !== undefined) seconds = BigInt.asIntN(64, f.num);
  return seconds === 0n ? undefined : rfc3339Seconds(Number(seconds) * 1000);
}

function ownerReference(b: Buffer | undefined): JsonObject {
  const o: JsonObject = {};
  for (const f of fields(b)) {
    if (f.no === 1) o['kind'] = text(f);
    else if (f.no === 3) o['name'] = text(f);
    else if (f.no === 4) o['uid'] = text(f);
    else if (f.no === 5) o['apiVersion'] = text(f);
    else if (f.no === 6) o['controller'] = f.num === 1n;
    else if (f.no === 7) o['blockOwnerDeletion'] = f.num === 1n;
  }
  return o;
}

/** ManagedFieldsEntry {1 manager, 2 operation, 3 apiVersion, 4 time, 6 fieldsType, 7 fieldsV1{1 raw JSON}, 8 subresource}. */
function managedFieldsEntry(b: Buffer | undefined): JsonObject {
  const o: JsonObject = {};
  for (const f of fields(b)) {
    if (f.no === 1 || f.no === 2 || f.no === 3 || f.no === 6 || f.no === 8) {
      const name = ({ 1: 'manager', 2: 'operation', 3: 'apiVersion', 6: 'fieldsType', 8: 'subresource' } as Record<number, string>)[f.no] as string;
      if (text(f) !== '') o[name] = text(f);
    } else if (f.no === 4) {
      const t = time(f.bytes);
      if (t) o['time'] = t;
    } else if (f.no === 7) {
      for (const r of fields(f.bytes)) {
        if (r.no === 1 && r.bytes) o['fieldsV1'] = JSON.parse(r.bytes.toString('utf8')) as Json;
      }
    }
  }
  return o;
}

/** ObjectMeta: field 1 of every top-level Kubernetes object. */
function objectMeta(b: Buffer | undefined): ObjectMeta {
  const m: ObjectMeta = {};
  const labels: Record<string, string> = {};
  const annotations: Record<string, string> = {};
  const finalizers: string[] = [];
  const owners: JsonObject[] = [];
  const managed: JsonObject[] = [];
  const strings: Record<number, keyof ObjectMeta> = { 1: 'name', 2: 'generateName', 3: 'namespace', 4: 'selfLink', 5: 'uid', 6: 'resourceVersion' };
  for (const f of fields(b)) {
    const s = strings[f.no];
    if (s !== undefined) {
      const v = text(f);
      if (v !== '') m[s] = v;
    } else if (f.no === 7) {
      if (int64(f) !== 0) m['generation'] = int64(f);
    } else if (f.no === 8 || f.no === 9) {
      const t = time(f.bytes);
      if (t) m[f.no === 8 ? 'creationTimestamp' : 'deletionTimestamp'] = t;
    } else if (f.no === 10) {
      m['deletionGracePeriodSeconds'] = int64(f);
    } else if (f.no === 11) {
      putEntry(labels, f, 'string');
    } else if (f.no === 12) {
      putEntry(annotations, f, 'string');
    } else if (f.no === 13) {
      owners.push(ownerReference(f.bytes));
    } else if (f.no === 14) {
      finalizers.push(text(f));
    } else if (f.no === 17) {
      managed.push(managedFieldsEntry(f.bytes));
    }
  }
  if (Object.keys(labels).length) m.labels = labels;
  if (Object.keys(annotations).length) m.annotations = annotations;
  if (finalizers.length) m.finalizers = finalizers;
  if (owners.length) m['ownerReferences'] = owners;
  if (managed.length) m.managedFields = managed;
  return m;
}

function secret(raw: Buffer): KubeObject {
  const obj: KubeObject = { apiVersion: 'v1', kind: 'Secret', metadata: {} };
  const data: Record<string, string> = {};
  const stringData: Record<string, string> = {};
  for (const f of fields(raw)) {
    if (f.no === 1) obj.metadata = objectMeta(f.bytes);
    else if (f.no === 2) putEntry(data, f, 'base64');
    else if (f.no === 3) {
      if (text(f) !== '') obj['type'] = text(f);
    } else if (f.no === 4) putEntry(stringData, f, 'string');
    else if (f.no === 5) obj['immutable'] = f.num === 1n;
  }
  if (Object.keys(data).length) obj['data'] = data;
  if (Object.keys(stringData).length) obj['stringData'] = stringData;
  return obj;
}

function configMap(raw: Buffer): KubeObject {
  const obj: KubeObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: {} };
  const data: Record<string, string> = {};
  const binaryData: Record<string, string> = {};
  for (const f of fields(raw)) {
    if (f.no === 1) obj.metadata = objectMeta(f.bytes);
    else if (f.no === 2) putEntry(data, f, 'string');
    else if (f.no === 3) putEntry(binaryData, f, 'base64');
    else if (f.no === 4) obj['immutable'] = f.num === 1n;
  }
  if (Object.keys(data).length) obj['data'] = data;
  if (Object.keys(binaryData).length) obj['binaryData'] = binaryData;
  return obj;
}

function namespace(raw: Buffer): KubeObject {
  const obj: KubeObject = { apiVersion: 'v1', kind: 'Namespace', metadata: {} };
  for (const f of fields(raw)) {
    if (f.no === 1) obj.metadata = objectMeta(f.bytes);
    else if (f.no === 2) {
      const finalizers: string[] = [];
      for (const s of fields(f.bytes)) if (s.no === 1) finalizers.push(text(s));
      if (finalizers.length) obj['spec'] = { finalizers };
    } else if (f.no === 3) {
      for (const s of fields(f.bytes)) if (s.no === 1 && text(s) !== '') obj['status'] = { phase: text(s) };
    }
  }
  return obj;
}

const DECODERS: Record<string, (raw: Buffer) => KubeObject> = { Secret: secret, ConfigMap: configMap, Namespace: namespace };

/** The kinds (of apiVersion v1) whose whole object decodeProtobufObject returns. */
export const DECODED_KINDS: readonly string[] = Object.keys(DECODERS);

export function isProtobufObject(value: Uint8Array): boolean {
  return value.length >= 4 && Buffer.from(value.buffer, value.byteOffset, 4).equals(PROTOBUF_MAGIC);
}

/** Splits `k8s\0` + runtime.Unknown into its fields. */
export function decodeProtobufEnvelope(body: Buffer): ProtobufEnvelope {
  if (!isProtobufObject(body)) {
    throw new ProtobufObjectError('PROTOBUF_NOT_K8S', 'not a Kubernetes protobuf object: missing the k8s magic prefix');
  }
  const env: ProtobufEnvelope = { apiVersion: '', kind: '', raw: Buffer.alloc(0), contentEncoding: '', contentType: '' };
  try {
    for (const f of new Reader(body.subarray(4)).fields()) {
      if (f.no === 1) {
        for (const t of fields(f.bytes)) {
          if (t.no === 1) env.apiVersion = text(t);
          else if (t.no === 2) env.kind = text(t);
        }
      } else if (f.no === 2 && f.bytes) env.raw = f.bytes;
      else if (f.no === 3) env.contentEncoding = text(f);
      else if (f.no === 4) env.contentType = text(f);
    }
  } catch (err) {
    throw new ProtobufObjectError('PROTOBUF_MALFORMED', `unable to decode the protobuf object: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return env;
}

export interface DecodeProtobufOptions {
  /**
   * Other kinds: `error` (default) throws PROTOBUF_UNSUPPORTED_KIND; `metadata` returns apiVersion,
   * kind and the ObjectMeta (field 1 of every top-level object) and leaves the rest undecoded.
   */
  otherKinds?: 'error' | 'metadata';
}

/** Decodes a Kubernetes protobuf object into the JSON object model. */
export function decodeProtobufObject(body: Buffer, options: DecodeProtobufOptions = {}): KubeObject {
  const env = decodeProtobufEnvelope(body);
  if (env.contentEncoding !== '') {
    throw new ProtobufObjectError('PROTOBUF_CONTENT_ENCODING', `unsupported protobuf content encoding ${JSON.stringify(env.contentEncoding)}`);
  }
  const decode = env.apiVersion === 'v1' ? DECODERS[env.kind] : undefined;
  try {
    if (decode !== undefined) return decode(env.raw);
    if (options.otherKinds === 'metadata' && env.kind !== '') {
      let metadata: ObjectMeta = {};
      for (const f of fields(env.raw)) if (f.no === 1 && f.bytes) metadata = objectMeta(f.bytes);
      return { apiVersion: env.apiVersion, kind: env.kind, metadata };
    }
  } catch (err) {
    throw new ProtobufObjectError('PROTOBUF_MALFORMED', `unable to decode the protobuf ${env.kind || 'object'}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  throw new ProtobufObjectError('PROTOBUF_UNSUPPORTED_KIND',
    `the protobuf object is ${JSON.stringify(`${env.apiVersion}, Kind=${env.kind}`)}; only v1 ${DECODED_KINDS.join(', ')} are decoded from protobuf`);
}
