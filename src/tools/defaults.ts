// Option values and defaults of the operator tools. A module of constants that imports nothing, so
// the CLI can build its flags and help without loading a tool.

/** Values listed and written per batch by `atrest rewrite`. */
export const DEFAULT_REWRITE_BATCH_SIZE = 500;

/** `atrest decrypt -o`: the output formats. */
export type OutputFormat = 'raw' | 'json' | 'yaml';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['raw', 'json', 'yaml'];
