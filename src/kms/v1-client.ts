// The kms v1 gRPC client (`v1beta1.KeyManagementService`, format.md §2.1): every request carries
// version `v1beta1`; before the first Encrypt/Decrypt a Version call must answer `v1beta1`, and a
// success is remembered (a failure is retried on the next call). Plugin errors pass through as
// KmsUnavailableError with Go's gRPC error text.
import { create } from '@bufbuild/protobuf';
import {
  DecryptRequestSchema, DecryptResponseSchema, EncryptRequestSchema, EncryptResponseSchema,
  VersionRequestSchema, VersionResponseSchema,
} from '../gen/v1beta1/api_pb.js';
import { messageOf } from '../errors.js';
import { parseKmsEndpoint } from './endpoint.js';
import { KmsResponseError, KmsUnavailableError } from './errors.js';
import { GrpcConnection, type CallObserver } from './grpc-connection.js';
import type { Closable, KmsV1Service } from './service.js';

export const KMS_V1_API_VERSION = 'v1beta1';
const SERVICE = '/v1beta1.KeyManagementService/';

export interface KmsV1ClientOptions {
  endpoint: string;
  timeoutMs: number;
  onCall?: CallObserver;
  initialReconnectBackoffMs?: number;
  maxReconnectBackoffMs?: number;
}

export class KmsV1Client implements KmsV1Service, Closable {
  private readonly conn: GrpcConnection;
  private versionChecked: Promise<void> | undefined;

  constructor(options: KmsV1ClientOptions) {
    this.conn = new GrpcConnection({ ...options, endpoint: parseKmsEndpoint(options.endpoint) });
  }

  async encrypt(plain: Uint8Array): Promise<Uint8Array> {
    await this.checkVersion();
    const res = await this.conn.unary(`${SERVICE}Encrypt`, EncryptRequestSchema, EncryptResponseSchema,
      create(EncryptRequestSchema, { version: KMS_V1_API_VERSION, plain }));
    return res.cipher;
  }

  async decrypt(cipher: Uint8Array): Promise<Uint8Array> {
    await this.checkVersion();
    const res = await this.conn.unary(`${SERVICE}Decrypt`, DecryptRequestSchema, DecryptResponseSchema,
      create(DecryptRequestSchema, { version: KMS_V1_API_VERSION, cipher }));
    return res.plain;
  }

  /** The Version handshake, once; concurrent first calls share it. */
  private checkVersion(): Promise<void> {
    this.versionChecked ??= this.version().catch((err: unknown) => {
      this.versionChecked = undefined;
      throw err;
    });
    return this.versionChecked;
  }

  private async version(): Promise<void> {
    let version: string;
    try {
      const res = await this.conn.unary(`${SERVICE}Version`, VersionRequestSchema, VersionResponseSchema,
        create(VersionRequestSchema, { version: KMS_V1_API_VERSION }));
      version = res.version;
    } catch (err) {
      throw new KmsUnavailableError(`failed get version from remote KMS provider: ${messageOf(err)}`,
        err instanceof KmsUnavailableError ? err.grpcCode : undefined, { cause: err });
    }
    if (version !== KMS_V1_API_VERSION) {
      throw new KmsResponseError(`KMS provider api version ${version} is not supported, only ${KMS_V1_API_VERSION} is supported now`);
    }
  }

  close(): void {
    this.conn.close();
  }
}
