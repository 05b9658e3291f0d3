// The kms v2 gRPC client (`v2.KeyManagementService`, format.md §2.2): Status, Encrypt and Decrypt
// with a fresh v4 UUID `uid` per Encrypt/Decrypt (made by the caller, KmsV2Service takes it).
// Responses are returned as they came; the Status probe and the DEK-seed state validate them.
import { create } from '@bufbuild/protobuf';
import {
  DecryptRequestSchema, DecryptResponseSchema, EncryptRequestSchema, EncryptResponseSchema,
  StatusRequestSchema, StatusResponseSchema,
} from '../gen/v2/api_pb.js';
import { parseKmsEndpoint } from './endpoint.js';
import { GrpcConnection, type CallObserver } from './grpc-connection.js';
import type { Closable, KmsV2DecryptRequest, KmsV2EncryptResponse, KmsV2Service, KmsV2StatusResponse } from './service.js';

const SERVICE = '/v2.KeyManagementService/';

export interface KmsV2ClientOptions {
  endpoint: string;
  timeoutMs: number;
  onCall?: CallObserver;
  initialReconnectBackoffMs?: number;
  maxReconnectBackoffMs?: number;
}

export class KmsV2Client implements KmsV2Service, Closable {
  private readonly conn: GrpcConnection;

  constructor(options: KmsV2ClientOptions) {
    this.conn = new GrpcConnection({ ...options, endpoint: parseKmsEndpoint(options.endpoint) });
  }

  async status(): Promise<KmsV2StatusResponse> {
    const res = await this.conn.unary(`${SERVICE}Status`, StatusRequestSchema, StatusResponseSchema, create(StatusRequestSchema));
    return { version: res.version, healthz: res.healthz, keyId: res.keyId };
  }

  async encrypt(uid: string, plaintext: Uint8Array): Promise<KmsV2EncryptResponse> {
    const res = await this.conn.unary(`${SERVICE}Encrypt`, EncryptRequestSchema, EncryptResponseSchema,
      create(EncryptRequestSchema, { plaintext, uid }));
    return { ciphertext: res.ciphertext, keyId: res.keyId, annotations: res.annotations };
  }

  async decrypt(uid: string, request: KmsV2DecryptRequest): Promise<Uint8Array> {
    const res = await this.conn.unary(`${SERVICE}Decrypt`, DecryptRequestSchema, DecryptResponseSchema,
      create(DecryptRequestSchema, { ciphertext: request.ciphertext, uid, keyId: request.keyId, annotations: request.annotations }));
    return res.plaintext;
  }

  close(): void {
    this.conn.close();
  }
}
