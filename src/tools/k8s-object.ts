// The object inside a decrypted value, for `atrest decrypt -o json|yaml`: kube-apiserver stores
// core objects as Kubernetes protobuf (`k8s\0` + runtime.Unknown) and custom resources as JSON.
// Secret, ConfigMap and Namespace are decoded whole from protobuf; other protobuf kinds give their
// apiVersion, kind and metadata only (`partial`), since we carry no schema for them.
import { decodeProtobufObject, DECODED_KINDS, isProtobufObject, type KubeObject } from '../k8s-objects/protobuf.js';
import { AtrestError } from '../errors.js';

export interface StoredObject {
  object: KubeObject;
  encoding: 'json' | 'protobuf';
  /** Only apiVersion, kind and metadata were decoded (a protobuf kind we have no schema for). */
  partial: boolean;
}

export class StoredObjectError extends AtrestError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORED_OBJECT_UNREADABLE', message, options);
  }
}

/** Decodes a plaintext value; throws StoredObjectError (never naming its content) when it is neither JSON nor protobuf. */
export function decodeStoredObject(plaintext: Buffer): StoredObject {
  if (isProtobufObject(plaintext)) {
    try {
      const object = decodeProtobufObject(plaintext, { otherKinds: 'metadata' });
      const partial = !(object.apiVersion === 'v1' && DECODED_KINDS.includes(object.kind ?? ''));
      return { object, encoding: 'protobuf', partial };
    } catch (err) {
      throw new StoredObjectError(err instanceof Error ? err.message : String(err), { cause: err });
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(plaintext.toString('utf8'));
  } catch {
    throw new StoredObjectError(`the value (${plaintext.length} bytes) is neither a JSON object nor a Kubernetes protobuf object`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new StoredObjectError('the value is JSON but not an object');
  }
  return { object: parsed as KubeObject, encoding: 'json', partial: false };
}
