// @grpc/grpc-js service definitions built from the generated protobuf descriptors
// (src/gen, @bufbuild/protobuf v2): method paths `/<package>.<Service>/<Method>` and
// (de)serializers from the message schemas, so field numbers are exactly those of proto/.
import { fromBinary, toBinary, type DescMessage, type DescService, type MessageShape } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';

/**
 * The grpc-js ServiceDefinition of `service`, keyed by method name (`Encrypt`, ...).
 * `typeName` overrides the fully-qualified service name: `v2alpha1.KeyManagementService` is the
 * v2 service under its 1.25–1.26 package name, with identical messages.
 */
export function serviceDefinition(service: DescService, typeName: string = service.typeName): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    if (method.methodKind !== 'unary') throw new Error(`${service.typeName}.${method.name}: only unary methods are served`);
    definition[method.name] = {
      path: `/${typeName}/${method.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: serializer(method.input),
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
      originalName: method.localName,
    } as grpc.MethodDefinition<unknown, unknown>;
  }
  return definition;
}

function serializer<T extends DescMessage>(schema: T): (message: MessageShape<T>) => Buffer {
  return (message) => {
    const bytes = toBinary(schema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<T extends DescMessage>(schema: T): (bytes: Buffer) => MessageShape<T> {
  return (bytes) => fromBinary(schema, bytes);
}
