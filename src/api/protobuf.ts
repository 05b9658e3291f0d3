// Decodes the Kubernetes protobuf request bodies kubectl 1.32 sends for `create secret|configmap|
// namespace` (kubectl.md §5): the magic `k8s\0` then a runtime.Unknown {1 typeMeta{1 apiVersion,
// 2 kind}, 2 raw, 3 contentEncoding, 4 contentType}; `raw` is the core/v1 message chosen by kind.
// A small hand decoder for the few messages involved (field numbers from k8s.io/api generated.proto).
// Zero values Go writes explicitly are dropped; unknown fields are skipped.
import { badRequest, unsupportedMediaType } from './errors.js';
import type { JsonObject, KubeObject, ObjectMeta } from './objects.js';
import { rfc3339Seconds } from './objects.js';

export const PROTOBUF_MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

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

const text = (f: Field): string => (f.bytes ?? Buffer.alloc(0)).toString('utf8');
const fields = (b: Buffer | undefined): Generator<Field> => new Reader(b ?? Buffer.alloc(0)).fields();

function mapEntry(f: Field, valueAs: 'string' | 'base64'): [string, string] {
  let key = '';
  let value: Buffer = Buffer.alloc(0);
  for (const e of fields(f.bytes)) {
    if (e.no === 1 && e.bytes) key = text(e);
    else if (e.no === 2 && e.bytes) value = e.bytes;
  }
  return [key, valueAs === 'base64' ? value.toString('base64') : value.toString('utf8')];
}

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

function objectMeta(b: Buffer | undefined): ObjectMeta {
  const m: ObjectMeta = {};
  const labels: Record<string, string> = {};
  const annotations: Record<string, string> = {};
  const finalizers: string[] = [];
  const owners: JsonObject[] = [];
  const strings: Record<number, keyof ObjectMeta> = { 1: 'name', 2: 'generateName', 3: 'namespace', 5: 'uid', 6: 'resourceVersion' };
  for (const f of fields(b)) {
    const s = strings[f.no];
    if (s !== undefined) {
      const v = text(f);
      if (v !== '') m[s] = v;
    } else if (f.no === 8) {
      const t = time(f.bytes);
      if (t) m.creationTimestamp = t;
    } else if (f.no === 11) {
      const [k, v] = mapEntry(f, 'string');
      labels[k] = v;
    } else if (f.no === 12) {
      const [k, v] = mapEntry(f, 'string');
      annotations[k] = v;
    } else if (f.no === 13) {
      owners.push(ownerReference(f.bytes));
    } else if (f.no === 14) {
      finalizers.push(text(f));
    }
  }
  if (Object.keys(labels).length) m.labels = labels;
  if (Object.keys(annotations).length) m.annotations = annotations;
  if (finalizers.length) m.finalizers = finalizers;
  if (owners.length) m['ownerReferences'] = owners;
  return m;
}

function secret(raw: Buffer): KubeObject {
  const obj: KubeObject = { apiVersion: 'v1', kind: 'Secret', metadata: {} };
  const data: Record<string, string> = {};
  const stringData: Record<string, string> = {};
  for (const f of fields(raw)) {
    if (f.no === 1) obj.metadata = objectMeta(f.bytes);
    else if (f.no === 2) {
      const [k, v] = mapEntry(f, 'base64');
      data[k] = v;
    } else if (f.no === 3) {
      if (text(f) !== '') obj['type'] = text(f);
    } else if (f.no === 4) {
      const [k, v] = mapEntry(f, 'string');
      stringData[k] = v;
    } else if (f.no === 5) obj['immutable'] = f.num === 1n;
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
    else if (f.no === 2) {
      const [k, v] = mapEntry(f, 'string');
      data[k] = v;
    } else if (f.no === 3) {
      const [k, v] = mapEntry(f, 'base64');
      binaryData[k] = v;
    } else if (f.no === 4) obj['immutable'] = f.num === 1n;
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

/** Decodes a `application/vnd.kubernetes.protobuf` body into the JSON object model. */
export function decodeProtobufObject(body: Buffer): KubeObject {
  if (body.length < 4 || !body.subarray(0, 4).equals(PROTOBUF_MAGIC)) {
    throw badRequest('the body of the request is not a Kubernetes protobuf object: missing the k8s magic prefix');
  }
  let apiVersion = '';
  let kind = '';
  let raw: Buffer = Buffer.alloc(0);
  let contentEncoding = '';
  try {
    for (const f of new Reader(body.subarray(4)).fields()) {
      if (f.no === 1) {
        for (const t of fields(f.bytes)) {
          if (t.no === 1) apiVersion = text(t);
          else if (t.no === 2) kind = text(t);
        }
      } else if (f.no === 2 && f.bytes) raw = f.bytes;
      else if (f.no === 3) contentEncoding = text(f);
    }
    if (contentEncoding !== '') throw badRequest(`unsupported protobuf content encoding ${JSON.stringify(contentEncoding)}`);
    const decode = DECODERS[kind];
    if (apiVersion !== 'v1' || decode === undefined) {
      throw unsupportedMediaType(`the protobuf body holds ${JSON.stringify(`${apiVersion}, Kind=${kind}`)}; only v1 Secret, ConfigMap and Namespace are accepted as protobuf`);
    }
    return decode(raw);
  } catch (err) {
    if (err instanceof Error && !('httpCode' in err)) throw badRequest(`unable to decode the protobuf body: ${err.message}`);
    throw err;
  }
}
