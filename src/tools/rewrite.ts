// `atrest rewrite`: re-encrypts every stale value of the selected resources in place, server-side,
// with compare-and-swap. The engine (rewriteStore) lives in src/storage/reencrypt.ts, shared with the
// StorageVersionMigration controller of `atrest serve`; this module adds what the tool shows people.
import type { RewriteSummary } from '../storage/reencrypt.js';

export { RewriteError, rewriteStore, type RewriteOptions, type RewriteProgress, type RewriteSummary } from '../storage/reencrypt.js';

/** The final summary for people. */
export function formatRewriteSummary(s: RewriteSummary): string {
  const lines = [
    `${s.dryRun ? 'dry run (nothing written): ' : ''}scanned ${s.scanned}, ${s.dryRun ? 'would rewrite' : 'rewritten'} ${s.dryRun ? s.stale : s.rewritten}, already current ${s.alreadyCurrent}, ` +
      `conflicts retried ${s.conflictsRetried}, deleted meanwhile ${s.deletedMeanwhile}, undecryptable ${s.undecryptable.length}, ` +
      (s.needsRetiredKey.length ? `need a retired KEK version ${s.needsRetiredKey.length}, ` : '') +
      `duration ${(s.durationMs / 1000).toFixed(1)}s`,
  ];
  for (const u of s.undecryptable) lines.push(`undecryptable ${u.key}: ${u.error}`);
  for (const u of s.needsRetiredKey) lines.push(`needs a retired KEK version ${u.key}: ${u.error}`);
  if (s.needsRetiredKey.length) lines.push(`  these values are NOT lost and were left as they are: ${RETIRED_KEY_ADVICE}`);
  for (const k of s.retriesExhausted) lines.push(`still changing after the retry limit (run it again): ${k}`);
  for (const n of s.notChecked) lines.push(`could not read ${n.values} value${n.values === 1 ? '' : 's'}: ${n.cause}`);
  if (s.notChecked.length) lines.push('  these values are NOT known to be lost: bring the KMS plugin back and run it again.');
  if (s.staleWrittenMeanwhile.length) {
    lines.push(
      `${s.staleWrittenMeanwhile.length} value${s.staleWrittenMeanwhile.length === 1 ? ' was' : 's were'} written during the run with an old key or provider, e.g. ${s.staleWrittenMeanwhile.slice(0, 3).join(', ')}:`,
      `  an API server still writes with the old key. ${SWITCH_ADVICE}`,
    );
  }
  for (const k of s.keyChanged) {
    lines.push(
      `the key_id of kms v2 provider "${k.provider}" changed during the run (${k.from} -> ${k.to}): values rewritten before the change are stale again.`,
      `  ${SWITCH_ADVICE}`,
    );
  }
  if (!s.dryRun) {
    const verdict = s.ok ? 'OK: every selected value is written by the current write provider and key'
      : !s.complete ? 'INCOMPLETE: some values could not be read (see above); run it again'
        : 'NOT OK: some values are not current (see above)';
    lines.push(verdict);
  }
  return lines.join('\n') + '\n';
}

/** What to do about values that need a retired KEK version (rewrite, StorageVersionMigration). */
export const RETIRED_KEY_ADVICE = 'restore the KEK version the message names (atrest kms-plugin restore-key), then run it again to re-encrypt them; do not delete them.';

/**
 * What to do when API servers still write with an old key: kube-apiserver (and atrest serve) asks
 * the plugin's Status every minute and switches to a new key_id then; the plugin itself picks up a
 * rotation within its refresh interval (atrest kms-plugin: 5 s).
 */
export const SWITCH_ADVICE = 'Wait until every API server writes with the new key (the plugin\'s refresh interval plus one kms v2 Status poll, 1 minute; '
  + 'at most 3 minutes plus the refresh interval, after which a server that has not switched fails its writes), check with `atrest status` '
  + '(KEY ID HASH) or the apiserver_envelope_encryption_key_id_hash_total{transformation_type="to_storage"} metric, then run atrest rewrite again.';
