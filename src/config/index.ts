// The config layer's public surface (ARCHITECTURE.md: config imports nothing of ours but the
// shared leaves). Import from here or from the individual modules.
export type * from './types.js';
export { ConfigError } from './errors.js';
export type { ConfigErrorCode } from './errors.js';
export type { FieldError } from './field-errors.js';
export { renderFieldError, renderFieldErrors } from './field-errors.js';
export { configContentHash, loadEncryptionConfigFile, parseEncryptionConfig } from './load.js';
export type { LoadOptions } from './load.js';
export {
  AES_KEY_SIZES,
  SECRETBOX_KEY_SIZES,
  assertValidEncryptionConfiguration,
  validateEncryptionConfiguration,
} from './validate.js';
export type { ProviderElement, ValidateOptions } from './validate.js';
export { buildResourceTable, groupResourceString, listProviders, parseGroupResource } from './resources.js';
export type { ProviderRef, ResourceRule, ResourceTable } from './resources.js';
export { decodeKeySecret } from './secret.js';
export { formatGoDuration, parseGoDuration } from './go-duration.js';
export { DEFAULT_KMS_API_VERSION, DEFAULT_KMS_CACHE_SIZE, DEFAULT_KMS_TIMEOUT_NS } from './defaults.js';
