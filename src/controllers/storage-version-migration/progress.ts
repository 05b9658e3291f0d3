// A migration's progress, persisted on its StorageVersionMigration so that a server that restarts
// (or the replica that takes the lease over) resumes it where it stopped: the annotation
// `atrest.dev/migration-progress` holds JSON with the last storage key done (relative to the
// resource's key prefix), the revision the run lists at, and the counts so far. kube's v1beta1 has
// no field for this (v1alpha1's spec.continueToken was dropped), so an annotation carries it, as
// controllers do; people read the same numbers in the Running condition's message.
import type { KubeObject } from '../../k8s-objects/object-model.js';
import { PROGRESS_ANNOTATION } from '../../k8s-objects/storage-version-migration.js';

export interface MigrationCounts {
  scanned: number;
  rewritten: number;
  alreadyCurrent: number;
  conflictsRetried: number;
  deletedMeanwhile: number;
  undecryptable: number;
  /** Refused by the KMS plugin because the KEK version they need is retired (not lost: restore it). */
  needsRetiredKey: number;
}

export interface MigrationProgress extends MigrationCounts {
  /** The last key done, relative to the resource's prefix (`<namespace>/<name>` or `<name>`); absent: from the start. */
  continue?: string;
  /** The revision the run lists at (its first page's); a compacted one falls back to the current revision. */
  revision?: number;
}

export const ZERO_COUNTS: MigrationCounts = { scanned: 0, rewritten: 0, alreadyCurrent: 0, conflictsRetried: 0, deletedMeanwhile: 0, undecryptable: 0, needsRetiredKey: 0 };

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
    scanned: count(v['scanned']), rewritten: count(v['rewritten']), alreadyCurrent: count(v['alreadyCurrent']),
    conflictsRetried: count(v['conflictsRetried']), deletedMeanwhile: count(v['deletedMeanwhile']), undecryptable: count(v['undecryptable']),
    needsRetiredKey: count(v['needsRetiredKey']),
    ...(typeof v['continue'] === 'string' && v['continue'] !== '' ? { continue: v['continue'] } : {}),
    ...(count(v['revision']) > 0 ? { revision: count(v['revision']) } : {}),
  };
}

export function writeProgress(obj: KubeObject, progress: MigrationProgress): void {
  obj.metadata.annotations = { ...obj.metadata.annotations, [PROGRESS_ANNOTATION]: JSON.stringify(progress) };
}

export function addCounts(a: MigrationCounts, b: MigrationCounts): MigrationCounts {
  return {
    scanned: a.scanned + b.scanned, rewritten: a.rewritten + b.rewritten, alreadyCurrent: a.alreadyCurrent + b.alreadyCurrent,
    conflictsRetried: a.conflictsRetried + b.conflictsRetried, deletedMeanwhile: a.deletedMeanwhile + b.deletedMeanwhile,
    undecryptable: a.undecryptable + b.undecryptable, needsRetiredKey: a.needsRetiredKey + b.needsRetiredKey,
  };
}

/** The counts for people (the Running and Succeeded messages). */
export function describeCounts(c: MigrationCounts): string {
  return `${c.scanned} objects scanned: ${c.rewritten} re-encrypted with the current write provider, ${c.alreadyCurrent} already current, ` +
    `${c.deletedMeanwhile} deleted meanwhile, ${c.conflictsRetried} write conflicts retried` + (c.undecryptable ? `, ${c.undecryptable} undecryptable` : '') +
    (c.needsRetiredKey ? `, ${c.needsRetiredKey} need a retired KEK version` : '');
}
