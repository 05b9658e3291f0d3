// storagemigration.k8s.io StorageVersionMigration in the JSON object model: the names kube 1.35 uses
// (group, version, condition types, the reasons of kube's migration controller), atrest's progress
// annotation, and pure helpers to read and set its conditions (metav1.Condition, apimachinery
// meta.SetStatusCondition's rules).
// Shared by the API server (validation, tables) and the migration controller, neither of which may
// import the other's internals.
import { rfc3339Seconds, type Json, type JsonObject, type KubeObject } from './object-model.js';

export const STORAGE_MIGRATION_GROUP = 'storagemigration.k8s.io';
/** The version kube-apiserver 1.35 serves (beta; v1alpha1 of 1.30–1.34 had another spec shape). */
export const STORAGE_MIGRATION_VERSION = 'v1beta1';
export const STORAGE_MIGRATION_API_VERSION = `${STORAGE_MIGRATION_GROUP}/${STORAGE_MIGRATION_VERSION}`;
export const STORAGE_VERSION_MIGRATIONS = 'storageversionmigrations';

/**
 * The controller's resume point on a StorageVersionMigration (written by the controller alone,
 * controllers/storage-version-migration/progress.ts; the API server keeps clients from setting it).
 */
export const PROGRESS_ANNOTATION = 'atrest.dev/migration-progress';

export type MigrationConditionType = 'Running' | 'Succeeded' | 'Failed';

/** The reasons kube's storage version migration controller writes (pkg/controller/storageversionmigrator). */
export const MIGRATION_REASONS = {
  Running: 'StorageVersionMigrationInProgress',
  Succeeded: 'StorageVersionMigrationSucceeded',
  Failed: 'StorageVersionMigrationFailed',
} as const satisfies Record<MigrationConditionType, string>;

/** metav1.Condition as JSON (message has no omitempty in Go: always present). */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** spec.resource as {group, resource} ('' for what is missing). */
export function migrationResource(obj: KubeObject): { group: string; resource: string } {
  const spec = isObject(obj['spec']) ? obj['spec'] : {};
  const r = isObject(spec['resource']) ? spec['resource'] : {};
  return { group: typeof r['group'] === 'string' ? r['group'] : '', resource: typeof r['resource'] === 'string' ? r['resource'] : '' };
}

/** The status object (created when absent). */
export function statusOf(obj: KubeObject): JsonObject {
  if (!isObject(obj['status'])) obj['status'] = {};
  return obj['status'] as JsonObject;
}

export function conditionsOf(obj: KubeObject): Condition[] {
  const status = isObject(obj['status']) ? obj['status'] : {};
  return Array.isArray(status['conditions']) ? (status['conditions'].filter(isObject) as unknown as Condition[]) : [];
}

export function findCondition(obj: KubeObject, type: string): Condition | undefined {
  return conditionsOf(obj).find((c) => c.type === type);
}

export function isConditionTrue(obj: KubeObject, type: MigrationConditionType): boolean {
  return findCondition(obj, type)?.status === 'True';
}

/** Succeeded or Failed: the controller is done with it. */
export function isFinished(obj: KubeObject): boolean {
  return isConditionTrue(obj, 'Succeeded') || isConditionTrue(obj, 'Failed');
}

/**
 * meta.SetStatusCondition: adds the condition, or updates the one of its type; lastTransitionTime
 * changes only when the status does.
 */
export function setCondition(obj: KubeObject, next: Omit<Condition, 'lastTransitionTime'>, nowMs: number): void {
  const status = statusOf(obj);
  const list = conditionsOf(obj);
  const existing = list.find((c) => c.type === next.type);
  if (!existing) {
    list.push({ type: next.type, status: next.status, lastTransitionTime: rfc3339Seconds(nowMs), reason: next.reason, message: next.message });
  } else {
    if (existing.status !== next.status) existing.lastTransitionTime = rfc3339Seconds(nowMs);
    existing.status = next.status;
    existing.reason = next.reason;
    existing.message = next.message;
  }
  status['conditions'] = list as unknown as Json[];
}
