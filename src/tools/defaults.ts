// Option values and defaults of the operator tools. A module of constants that imports nothing, so
// the CLI can build its flags and help without loading a tool.

/** Values listed and written per batch by `atrest rewrite` (and a StorageVersionMigration). */
export { DEFAULT_REWRITE_BATCH_SIZE } from '../storage/defaults.js';

/** `atrest decrypt -o`: the output formats. */
export type OutputFormat = 'raw' | 'json' | 'yaml';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['raw', 'json', 'yaml'];
