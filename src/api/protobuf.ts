// Kubernetes protobuf request bodies (kubectl 1.32 sends them for `create secret|configmap|
// namespace`, kubectl.md §5) and protobuf values kube-apiserver stored. The decoder itself lives in
// src/k8s-objects/protobuf.ts, shared with the offline tools; this maps its errors to HTTP ones.
import { decodeProtobufObject as decodeObject, ProtobufObjectError } from '../k8s-objects/protobuf.js';
import { badRequest, unsupportedMediaType } from './errors.js';
import type { KubeObject } from './objects.js';

export { isProtobufObject } from '../k8s-objects/protobuf.js';

/** Decodes a `application/vnd.kubernetes.protobuf` body into the JSON object model. */
export function decodeProtobufObject(body: Buffer): KubeObject {
  try {
    return decodeObject(body);
  } catch (err) {
    if (!(err instanceof ProtobufObjectError)) throw err;
    if (err.code === 'PROTOBUF_UNSUPPORTED_KIND') throw unsupportedMediaType(`${err.message}; only these are accepted as protobuf`);
    throw badRequest(err.code === 'PROTOBUF_NOT_K8S' ? `the body of the request is ${err.message}` : err.message);
  }
}
