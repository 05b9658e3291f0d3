// Where the embedded store lives by default, and how much a re-encryption does per batch. A module of constants that imports nothing, so the CLI
// can show its flag defaults without loading a store backend.

/** The default `--data-dir`. */
export const DEFAULT_DATA_DIR = './.atrest';

/** The embedded store's file name inside `--data-dir`. */
export const STORE_FILE_NAME = 'store.db';

/** Values listed and written per batch by a re-encryption (`atrest rewrite`, a StorageVersionMigration). */
export const DEFAULT_REWRITE_BATCH_SIZE = 500;
