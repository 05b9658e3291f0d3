// StorageVersionMigration test helpers: stale objects written straight into a store (plaintext JSON,
// as an identity provider would have stored them: fast, no API round trips), a migration created and
// awaited through the HTTP API, and its recorded progress.
import { randomUUID } from 'node:crypto';
import type { RunningApiServer } from '../../src/api/index.js';
import type { MigrationProgress } from '../../src/controllers/storage-version-migration/progress.js';
import { PROGRESS_ANNOTATION } from '../../src/k8s-objects/storage-version-migration.js';
import type { Store } from '../../src/storage/types.js';
import { waitFor } from './plugin.js';
import { apiRequest } from './server.js';

export const SVM_PATH = '/apis/storagemigration.k8s.io/v1beta1/storageversionmigrations';

/** What apiRequest needs of a server (a replica's client works too). */
export type ApiClient = Pick<RunningApiServer, 'url' | 'token' | 'caPem'>;

export interface MigrationObject {
  metadata: { name: string; uid: string; resourceVersion: string; annotations?: Record<string, string> };
  spec: { resource: { group: string; resource: string } };
  status: {
    resourceVersion?: string;
    conditions?: Array<{ type: string; status: string; reason: string; message: string; lastTransitionTime: string }>;
  };
}

export type Progress = MigrationProgress;

/** Secret names `<prefix>-00000` …, in key order. */
export function secretName(i: number, prefix = 's'): string {
  return `${prefix}-${String(i).padStart(5, '0')}`;
}

/** A Secret as the API server stores it (JSON); `value` is its data.v. */
export function secretJson(name: string, value: string, namespace = 'default'): Buffer {
  return Buffer.from(JSON.stringify({
    kind: 'Secret', apiVersion: 'v1',
    metadata: { name, namespace, uid: randomUUID(), creationTimestamp: '2026-01-01T00:00:00Z' },
    data: { v: Buffer.from(value).toString('base64') }, type: 'Opaque',
  }));
}

/** Writes `count` Secrets as plaintext JSON (stale under any encrypting configuration), 200 at a time. */
export async function seedPlainSecrets(store: Store, count: number, options: { etcdPrefix?: string; prefix?: string; value?: (i: number) => string } = {}): Promise<string[]> {
  const base = `${options.etcdPrefix ?? '/registry'}/secrets/default/`;
  const names = Array.from({ length: count }, (_, i) => secretName(i, options.prefix));
  for (let i = 0; i < count; i += 200) {
    await Promise.all(names.slice(i, i + 200).map((n, j) => store.create(base + n, secretJson(n, options.value?.(i + j) ?? `seed-${i + j}`))));
  }
  return names;
}

export async function createMigration(client: ApiClient, name: string, resource: string, group = ''): Promise<MigrationObject> {
  const r = await apiRequest(client as RunningApiServer, 'POST', SVM_PATH, {
    body: JSON.stringify({ apiVersion: 'storagemigration.k8s.io/v1beta1', kind: 'StorageVersionMigration', metadata: { name }, spec: { resource: { group, resource } } }),
  });
  if (r.status !== 201) throw new Error(`creating the migration answered ${r.status}: ${r.text}`);
  return r.json<MigrationObject>();
}

export async function getMigration(client: ApiClient, name: string): Promise<MigrationObject | undefined> {
  const r = await apiRequest(client as RunningApiServer, 'GET', `${SVM_PATH}/${name}`);
  if (r.status === 404) return undefined;
  if (r.status !== 200) throw new Error(`reading the migration answered ${r.status}: ${r.text}`);
  return r.json<MigrationObject>();
}

export function condition(obj: MigrationObject | undefined, type: string): { status: string; reason: string; message: string } | undefined {
  return obj?.status.conditions?.find((c) => c.type === type);
}

/** The progress the controller recorded (annotation atrest.dev/migration-progress). */
export function progressOf(obj: MigrationObject | undefined): Progress | undefined {
  const text = obj?.metadata.annotations?.[PROGRESS_ANNOTATION];
  return text ? (JSON.parse(text) as Progress) : undefined;
}

/** Waits (bounded) until the migration is Succeeded or Failed; returns it. `client` may change (a replica dies). */
export async function waitFinished(client: ApiClient | (() => ApiClient), name: string, timeoutMs = 60_000): Promise<MigrationObject> {
  let last: MigrationObject | undefined;
  const target = typeof client === 'function' ? client : () => client;
  await waitFor(`migration ${name} finished`, async () => {
    last = await getMigration(target(), name).catch(() => undefined);
    return condition(last, 'Succeeded')?.status === 'True' || condition(last, 'Failed')?.status === 'True';
  }, timeoutMs, 100);
  return last as MigrationObject;
}

/** Raw values under `prefix` that do not start with `valuePrefix` (their keys). */
export async function keysNotUnder(store: Store, prefix: string, valuePrefix: string): Promise<string[]> {
  const bad: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await store.list(prefix, { limit: 1000, ...(after ? { after } : {}) });
    for (const kv of page.items) if (!Buffer.from(kv.value).subarray(0, valuePrefix.length).equals(Buffer.from(valuePrefix))) bad.push(kv.key);
    if (!page.more || page.items.length === 0) break;
    after = page.items[page.items.length - 1]?.key;
  }
  return bad;
}
