// A small gRPC client for the plugin's own socket: the health endpoint's real round trip through
// the socket, and the benchmark. (kube-apiserver's side, with its caches and checks, is src/kms.)
import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import * as v2 from '../gen/v2/api_pb.js';
import type { ListenAddress } from './listen-address.js';

export class PluginSocketClient {
  private readonly client: grpc.Client;

  constructor(address: ListenAddress, private readonly timeoutMs = 3000) {
    this.client = new grpc.Client(`unix:${address.netPath}`, grpc.credentials.createInsecure(), {
      'grpc.default_authority': 'localhost',
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
  }

  unary<I extends DescMessage, O extends DescMessage>(path: string, input: I, output: O, request: MessageShape<I>): Promise<MessageShape<O>> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest<MessageShape<I>, MessageShape<O>>(
        path,
        (m) => Buffer.from(toBinary(input, m)),
        (b) => fromBinary(output, b),
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + this.timeoutMs },
        (err, response) => (err || !response ? reject(err ?? new Error('no response')) : resolve(response)),
      );
    });
  }

  status(): Promise<v2.StatusResponse> {
    return this.unary('/v2.KeyManagementService/Status', v2.StatusRequestSchema, v2.StatusResponseSchema, create(v2.StatusRequestSchema));
  }

  encrypt(plaintext: Uint8Array): Promise<v2.EncryptResponse> {
    return this.unary('/v2.KeyManagementService/Encrypt', v2.EncryptRequestSchema, v2.EncryptResponseSchema,
      create(v2.EncryptRequestSchema, { plaintext, uid: randomUUID() }));
  }

  /** `annotations`: what Encrypt returned with the ciphertext, handed back as kube-apiserver does. */
  decrypt(ciphertext: Uint8Array, keyId: string, annotations: Record<string, Uint8Array> = {}): Promise<v2.DecryptResponse> {
    return this.unary('/v2.KeyManagementService/Decrypt', v2.DecryptRequestSchema, v2.DecryptResponseSchema,
      create(v2.DecryptRequestSchema, { ciphertext, keyId, uid: randomUUID(), annotations }));
  }

  /** v2 Encrypt then Decrypt of a random 32-byte value; rejects with the reason when anything fails. */
  async roundTrip(): Promise<{ keyId: string }> {
    const probe = randomBytes(32);
    const wrapped = await this.encrypt(probe);
    const { plaintext } = await this.decrypt(wrapped.ciphertext, wrapped.keyId, wrapped.annotations);
    if (plaintext.length !== probe.length || !timingSafeEqual(plaintext, probe)) throw new Error('round trip returned different plaintext');
    return { keyId: wrapped.keyId };
  }

  close(): void {
    this.client.close();
  }
}
