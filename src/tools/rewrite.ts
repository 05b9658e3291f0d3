// `atrest rewrite`: re-encrypts every stale value of the selected resources in place, server-side,
// with compare-and-swap. The engine (rewriteStore) lives in src/storage/reencrypt.ts, shared with the
// StorageVersionMigration controller of `atrest serve`; this module adds what the tool shows people.
import type { RewriteSummary } from '../storage/reencrypt.js';

export {
  DEFAULT_REWRITE_MAX_ATTEMPTS, RewriteError, rewriteStore, TokenBucket,
  type RewriteCounts, type RewriteErrorCode, type RewriteOptions, type RewriteProgress, type RewriteSummary,
} from '../storage/reencrypt.js';

/** The final summary for people. */
export function formatRewriteSummary(s: RewriteSummary): string {
  const lines = [
    `${s.dryRun ? 'dry run (nothing written): ' : ''}scanned ${s.scanned}, ${s.dryRun ? 'would rewrite' : 'rewritten'} ${s.dryRun ? s.stale : s.rewritten}, already current ${s.alreadyCurrent}, ` +
      `conflicts retried ${s.conflictsRetried}, deleted meanwhile ${s.deletedMeanwhile}, undecryptable ${s.undecryptable.length}, ` +
      `duration ${(s.durationMs / 1000).toFixed(1)}s`,
  ];
  for (const u of s.undecryptable) lines.push(`undecryptable ${u.key}: ${u.error}`);
  for (const k of s.retriesExhausted) lines.push(`still changing after the retry limit (run it again): ${k}`);
  if (!s.dryRun) {
    lines.push(s.ok ? 'OK: every selected value is written by the current write provider and key' : 'NOT OK: some values were not rewritten (see above)');
  }
  return lines.join('\n') + '\n';
}
