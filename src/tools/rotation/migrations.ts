// Re-encrypting through the API server with StorageVersionMigration (storagemigration.k8s.io as
// kube-apiserver 1.30+ and atrest serve serve it, in the version discovery prefers: v1beta1 of 1.35,
// or v1alpha1 of 1.30–1.34, whose spec.resource also names a version): one per resource, named
// after the rotation's new key_id so a rerun finds its own. An existing one is waited for while it
// runs, and created again when it ended Failed, or Succeeded while values under the old key remain
// (written later, or restored from a backup): a migration that finished cannot be run twice.
import { KubeClientError, type KubeClient } from '../kube-client.js';
import { pollUntil, RotateError, type RotateReporter } from './types.js';

export const SVM_GROUP = 'storagemigration.k8s.io';
/** How often a running migration's progress is shown at most. */
const PROGRESS_EVERY_MS = 2000;

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}

export interface StorageVersionMigration {
  metadata?: { name?: string; resourceVersion?: string };
  status?: { conditions?: Condition[]; resourceVersion?: string };
}

/** The group version the server prefers for storagemigration.k8s.io (e.g. `storagemigration.k8s.io/v1beta1`). */
export async function svmGroupVersion(client: KubeClient): Promise<string> {
  const group = await client.json<{ preferredVersion?: { groupVersion?: string } }>('GET', `/apis/${SVM_GROUP}`, undefined, true);
  const gv = group?.preferredVersion?.groupVersion;
  if (!gv) {
    throw new RotateError('incomplete', `${client.url} does not serve ${SVM_GROUP} (StorageVersionMigration)`,
      'enable it on kube-apiserver (--feature-gates=StorageVersionMigrator=true and --runtime-config=storagemigration.k8s.io/v1alpha1=true on 1.30–1.34, .../v1beta1=true on 1.35), or run atrest rotate --migrate-with rewrite');
  }
  return gv;
}

/** `atrest-rotate-<8 hex of the key_id hash>-<resource>`: a valid object name, one per rotation and resource. */
export function migrationName(resource: string, keyIdHash: string): string {
  const hex = keyIdHash.replace(/^sha256:/, '').slice(0, 8);
  return `atrest-rotate-${hex}-${resource.toLowerCase().replace(/[^a-z0-9.-]/g, '-')}`.slice(0, 253);
}

function condition(svm: StorageVersionMigration | undefined, type: string): Condition | undefined {
  return svm?.status?.conditions?.find((c) => c.type === type && c.status === 'True');
}

export type MigrationState = 'absent' | 'running' | 'succeeded' | 'failed';

export function migrationState(svm: StorageVersionMigration | undefined): MigrationState {
  if (!svm) return 'absent';
  if (condition(svm, 'Succeeded')) return 'succeeded';
  if (condition(svm, 'Failed')) return 'failed';
  return 'running';
}

export interface MigrateOptions {
  groupVersion: string;
  /** `secrets`, or `deployments.apps`. */
  resource: string;
  name: string;
  timeoutMs: number;
  pollMs: number;
  report: RotateReporter;
  signal?: AbortSignal;
}

const path = (gv: string, name?: string): string => `/apis/${gv}/storageversionmigrations${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;

async function create(client: KubeClient, o: MigrateOptions): Promise<void> {
  const dot = o.resource.indexOf('.');
  const [resource, group] = dot < 0 ? [o.resource, ''] : [o.resource.slice(0, dot), o.resource.slice(dot + 1)];
  // v1alpha1 (kube 1.30–1.34) names a version too: the group's preferred one, as kubectl would use.
  const version = o.groupVersion.endsWith('/v1alpha1') ? await preferredVersion(client, group) : undefined;
  await client.json('POST', path(o.groupVersion), {
    apiVersion: o.groupVersion,
    kind: 'StorageVersionMigration',
    metadata: { name: o.name, labels: { 'app.kubernetes.io/managed-by': 'atrest-rotate' } },
    spec: { resource: version === undefined ? { group, resource } : { group, version, resource } },
  });
}

async function preferredVersion(client: KubeClient, group: string): Promise<string> {
  if (group === '') return 'v1';
  const found = await client.json<{ preferredVersion?: { version?: string } }>('GET', `/apis/${group}`, undefined, true);
  const version = found?.preferredVersion?.version;
  if (!version) throw new RotateError('incomplete', `${client.url} does not serve the API group ${group}`, 'leave that resource out with --resources, or check the API server');
  return version;
}

async function remove(client: KubeClient, o: MigrateOptions): Promise<void> {
  await client.json('DELETE', path(o.groupVersion, o.name), undefined, true);
  // Gone before it is created again (a finalizer would keep it a while).
  await pollUntil(async () => ((await client.json('GET', path(o.groupVersion, o.name), undefined, true)) === undefined ? true : undefined), {
    timeoutMs: o.timeoutMs,
    pollMs: o.pollMs,
    onTimeout: () => new RotateError('incomplete', `StorageVersionMigration ${o.name} was deleted but is still there`, `check it with kubectl describe storageversionmigration ${o.name}, then run atrest rotate again`),
  });
}

/**
 * Runs the migration of one resource to Succeeded: creates it (again, when `again` or when it
 * Failed before), waits while it runs, reports its Running condition as it changes.
 */
export async function runMigration(client: KubeClient, o: MigrateOptions, again: boolean): Promise<void> {
  const get = () => client.json<StorageVersionMigration>('GET', path(o.groupVersion, o.name), undefined, true);
  const existing = await get();
  const state = migrationState(existing);
  if (state === 'failed' || (state === 'succeeded' && again)) {
    const why = state === 'failed' ? `ended Failed (${condition(existing, 'Failed')?.message ?? 'no message'})` : 'succeeded earlier, but values under the old key_id remain';
    o.report.line(`${o.resource}: StorageVersionMigration ${o.name} ${why}: creating it again`);
    await remove(client, o);
  }
  if (state === 'absent' || state === 'failed' || (state === 'succeeded' && again)) {
    await create(client, o);
    o.report.line(`${o.resource}: created StorageVersionMigration ${o.name}`);
  } else if (state === 'running') {
    o.report.line(`${o.resource}: StorageVersionMigration ${o.name} is running already (an earlier run): waiting for it`);
  }
  const started = Date.now();
  let last = '';
  let lastAt = 0;
  const done = await pollUntil(async () => {
    let svm: StorageVersionMigration | undefined;
    try {
      svm = await get();
    } catch (err) {
      if (!(err instanceof KubeClientError)) throw err;
      o.report.line(`${o.resource}: ${err.message}`);
      return undefined;
    }
    const s = migrationState(svm);
    if (s === 'succeeded' || s === 'failed') return { s, svm };
    const running = condition(svm, 'Running');
    const line = `${o.resource}: ${s === 'absent' ? 'gone' : 'Running'}${running?.message ? `: ${running.message}` : ''}`;
    // The Running message carries the controller's counts: show it as it moves, every few seconds.
    if (line !== last && Date.now() - lastAt >= PROGRESS_EVERY_MS) {
      o.report.line(line);
      last = line;
      lastAt = Date.now();
    }
    return undefined;
  }, {
    timeoutMs: o.timeoutMs,
    pollMs: o.pollMs,
    ...(o.signal ? { signal: o.signal } : {}),
    onTimeout: () => new RotateError('incomplete', `StorageVersionMigration ${o.name} has not succeeded within the timeout`,
      `follow it with kubectl get storageversionmigration ${o.name} -w; run atrest rotate again to go on waiting (it resumes)`),
  });
  if (done.s === 'failed') {
    const failed = condition(done.svm, 'Failed');
    const message = `StorageVersionMigration ${o.name} failed: ${failed?.reason ?? ''} ${failed?.message ?? ''}`.trim();
    // Objects under an already retired KEK version (the controller's words, migrate.ts): a finding, with its own remedy.
    if (/ need a retired KEK version/.test(failed?.message ?? '')) {
      throw new RotateError('findings', message, 'those objects are not lost: restore the KEK version the message names (atrest kms-plugin restore-key), then run atrest rotate again (it creates the migration again)');
    }
    throw new RotateError('incomplete', message,
      `see kubectl describe storageversionmigration ${o.name} and the API server log; fix the cause and run atrest rotate again (it creates the migration again)`);
  }
  o.report.line(`${o.resource}: StorageVersionMigration ${o.name} Succeeded (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}
