// The KMS plugin protocol as TypeScript interfaces: what the envelope transformers need from a KMS,
// and what the plugin implements. The gRPC client (src/kms/client) and in-process fakes implement
// these; the transformers (src/transform) know a KMS only through them (ARCHITECTURE.md).

/** KMS v1 (`v1beta1.KeyManagementService`): wrap and unwrap one DEK. */
export interface KmsV1Service {
  encrypt(plain: Uint8Array): Promise<Uint8Array>;
  decrypt(cipher: Uint8Array): Promise<Uint8Array>;
}

export interface KmsV2StatusResponse {
  version: string;
  healthz: string;
  keyId: string;
}

export interface KmsV2EncryptResponse {
  ciphertext: Uint8Array;
  keyId: string;
  annotations: Record<string, Uint8Array>;
}

export interface KmsV2DecryptRequest {
  ciphertext: Uint8Array;
  keyId: string;
  annotations: Record<string, Uint8Array>;
}

/** KMS v2 (`v2.KeyManagementService`). `uid` is a fresh v4 UUID per call, for plugin-side tracing. */
export interface KmsV2Service {
  status(): Promise<KmsV2StatusResponse>;
  encrypt(uid: string, plaintext: Uint8Array): Promise<KmsV2EncryptResponse>;
  decrypt(uid: string, request: KmsV2DecryptRequest): Promise<Uint8Array>;
}

/** Closable services (gRPC connections) implement this too. */
export interface Closable {
  close(): Promise<void> | void;
}
