// A migration's progress, persisted on its StorageVersionMigration so that a server that restarts
// (or the replica that takes the lease over) resumes it where it stopped: the annotation
// `atrest.dev/migration-progress` holds JSON with the last storage key done (relative to the
// resource's key prefix), the revision the run lists at, and the counts so far. kube's v1beta1 has
// no field for this (v1alpha1's spec.continueToken was dropped), so an annotation carries it, as
// controllers do; people read the same numbers in the Running condition's message.
import type { KubeObject } from '../../k8s-objects/object-model.js';
import { PROGRESS_ANNOTATION } from '../../k8s-objects/storage-version-migration.js';
import type { RewriteProgress } from '../../storage/reencrypt.js';

/**
 * A run's counts as the re-encryption engine reports them, without `stale` (what a migration finds
 * stale it rewrites: rewritten and conflictsRetried say it). needsRetiredKey: refused by the KMS
 * plugin because the KEK version they need is retired (not lost: restore it).
 */
export type MigrationCounts = Omit<RewriteProgress, 'stale'>;

export interface MigrationProgress extends MigrationCounts {
  /** The last key done, relative to the resource's prefix (`<namespace>/<name>` or `<name>`); absent: from the start. */
  continue?: string;
  /** The revision the run lists at (its first page's); a compacted one falls back to the current revision. */
  revision?: number;
}

export const ZERO_COUNTS: Readonly<MigrationCounts> = { scanned: 0, rewritten: 0, alreadyCurrent: 0, conflictsRetried: 0, deletedMeanwhile: 0, undecryptable: 0, needsRetiredKey: 0 };
const COUNT_KEYS = Object.keys(ZERO_COUNTS) as Array<keyof MigrationCounts>;

const count = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0);

/** The persisted progress; a missing or unreadable annotation means from the start. */
export function readProgress(obj: KubeObject): MigrationProgress {
  const text = obj.metadata.annotations?.[PROGRESS_ANNOTATION];
  if (!text) return { ...ZERO_COUNTS };
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { ...ZERO_COUNTS };
  }
  if (typeof v !== 'object' || v === null) return { ...ZERO_COUNTS };
  return {
    ...countsOf((k) => count(v[k])),
    ...(typeof v['continue'] === 'string' && v['continue'] !== '' ? { continue: v['continue'] } : {}),
    ...(count(v['revision']) > 0 ? { revision: count(v['revision']) } : {}),
  };
}

export function writeProgress(obj: KubeObject, progress: MigrationProgress): void {
  obj.metadata.annotations = { ...obj.metadata.annotations, [PROGRESS_ANNOTATION]: JSON.stringify(progress) };
}

/** Each count computed by `value` (the counts picked out of a larger record, a sum, a difference). */
export function countsOf(value: (k: keyof MigrationCounts) => number): MigrationCounts {
  const out = { ...ZERO_COUNTS };
  for (const k of COUNT_KEYS) out[k] = value(k);
  return out;
}

export function addCounts(a: MigrationCounts, b: MigrationCounts): MigrationCounts {
  return countsOf((k) => a[k] + b[k]);
}

export function subtractCounts(a: MigrationCounts, b: MigrationCounts): MigrationCounts {
  return countsOf((k) => a[k] - b[k]);
}

/** The counts for people (the Running and Succeeded messages). */
export function describeCounts(c: MigrationCounts): string {
  return `${c.scanned} objects scanned: ${c.rewritten} re-encrypted with the current write provider, ${c.alreadyCurrent} already current, ` +
    `${c.deletedMeanwhile} deleted meanwhile, ${c.conflictsRetried} write conflicts retried` + (c.undecryptable ? `, ${c.undecryptable} undecryptable` : '') +
    (c.needsRetiredKey ? `, ${c.needsRetiredKey} need a retired KEK version` : '');
}
