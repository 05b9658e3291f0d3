// The KMS client side, for the config builder, the API server and the CLI: one entry point per
// loaded configuration (`createKmsProviders`), plus the pieces tools and tests use directly.
export { createKmsProviders, DEFAULT_KMS_INTERVALS, type KmsIntervals, type KmsProviders, type KmsProvidersOptions } from './factory.js';
export { KmsV1Client, type KmsV1ClientOptions } from './v1-client.js';
export { KmsV2Client, type KmsV2ClientOptions } from './v2-client.js';
export { parseKmsEndpoint, type UnixEndpoint } from './endpoint.js';
export { KmsMetrics, createTransformationMetrics } from './metrics.js';
export {
  EnvelopeError, KmsEndpointError, KmsNotReadyError, KmsResponseError, KmsUnavailableError, KmsWriteError,
} from './errors.js';
export type { KmsV1Service, KmsV2Service, Closable } from './service.js';
