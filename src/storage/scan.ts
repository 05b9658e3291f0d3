// Pages of a long scan of the store (verify, rewrite and migrations, decrypt of a live store).
import { isStoreError } from './errors.js';
import type { ListOptions, ListResult, Store } from './types.js';

/**
 * One page of a scan read at `options.revision`. A scan that outlives its revision's history (the
 * API server compacts every few minutes) goes on after the same key at the current revision, so
 * every key after it is still looked at once; the page's `revision` says which one was read.
 */
export async function listScanPage(store: Store, prefix: string, options: ListOptions): Promise<ListResult> {
  try {
    return await store.list(prefix, options);
  } catch (err) {
    if (!isStoreError(err, 'COMPACTED') || options.revision === undefined) throw err;
    const { revision: _compacted, ...current } = options;
    return store.list(prefix, current);
  }
}
