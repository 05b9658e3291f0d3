// Server-side apply for these kinds (maps and scalars; lists are atomic leaves). The applied
// configuration is merged over the live object. A leaf the applier sets to a different value than
// live while another manager owns it is a conflict (409, like kube) unless `force`; with force the
// applier takes it. Fields this manager applied before but no longer lists are removed unless another
// manager owns them too. Ownership lives in `metadata.managedFields` (operation Apply, FieldsV1).
import { ApiError, type StatusCause } from '../errors.js';
import { cloneJson, isPlainObject, type Json, type JsonObject, type KubeObject } from '../objects.js';
import { leaves, readManaged, writeManaged, type ManagedEntry } from './managed-fields.js';

function removePath(obj: JsonObject, path: string[]): void {
  const parents: JsonObject[] = [];
  let cur: JsonObject = obj;
  for (const k of path.slice(0, -1)) {
    const next = cur[k];
    if (!isPlainObject(next)) return;
    parents.push(cur);
    cur = next;
  }
  delete cur[path[path.length - 1] as string];
  // Drop maps this emptied (not metadata itself).
  for (let i = path.length - 2; i >= 0; i--) {
    const parent = parents[i] as JsonObject;
    const child = parent[path[i] as string];
    if (isPlainObject(child) && Object.keys(child).length === 0 && path.slice(0, i + 1).join('.') !== 'metadata') delete parent[path[i] as string];
    else break;
  }
}

function mergeApplied(live: Json | undefined, applied: Json): Json {
  if (!isPlainObject(applied)) return cloneJson(applied);
  const result: JsonObject = isPlainObject(live) ? { ...live } : {};
  for (const [k, v] of Object.entries(applied)) {
    if (v === null) delete result[k];
    else result[k] = mergeApplied(result[k], v);
  }
  return result;
}

const fieldText = (key: string): string => '.' + key.split('\u0000').join('.');

function conflictError(conflicts: Array<{ manager: string; key: string }>): ApiError {
  const causes: StatusCause[] = conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with "${c.manager}" using v1`, field: fieldText(c.key) }));
  const managers = [...new Set(conflicts.map((c) => c.manager))];
  const message = conflicts.length === 1
    ? `Apply failed with 1 conflict: conflict with "${conflicts[0]?.manager}" using v1: ${fieldText(conflicts[0]?.key ?? '')}`
    : `Apply failed with ${conflicts.length} conflicts: ${managers.map((m) => `conflicts with "${m}" using v1:\n${conflicts.filter((c) => c.manager === m).map((c) => `- ${fieldText(c.key)}`).join('\n')}`).join('\n')}`;
  return new ApiError(409, 'Conflict', message, { causes });
}

/**
 * `applied` has passed checkObject. `stringData` keys are owned as `data` keys (they are folded into
 * data on write). Throws a 409 Conflict (FieldManagerConflict causes) unless `force`.
 */
export function serverSideApply(live: KubeObject | undefined, applied: KubeObject, manager: string, now: string, force = false): KubeObject {
  const ownedSource = cloneJson(applied) as unknown as JsonObject;
  if (isPlainObject(ownedSource['stringData'])) {
    const data = isPlainObject(ownedSource['data']) ? ownedSource['data'] : {};
    for (const [k, v] of Object.entries(ownedSource['stringData'])) data[k] = Buffer.from(String(v ?? ''), 'utf8').toString('base64');
    ownedSource['data'] = data;
    delete ownedSource['stringData'];
  }
  delete (ownedSource['metadata'] as JsonObject | undefined)?.['managedFields'];
  const appliedLeaves = leaves(ownedSource);
  const liveLeaves = leaves(live as unknown as Json | undefined);

  const entries: ManagedEntry[] = readManaged(live);
  const isMine = (e: ManagedEntry): boolean => e.entry['manager'] === manager && e.entry['operation'] === 'Apply';
  const others = entries.filter((e) => !isMine(e));

  const conflicts: Array<{ manager: string; key: string }> = [];
  for (const [k, v] of appliedLeaves) {
    const cur = liveLeaves.get(k);
    if (cur === undefined || cur === v) continue;
    for (const e of others) {
      if (!e.fields.has(k)) continue;
      if (force) e.fields.delete(k);
      else conflicts.push({ manager: String(e.entry['manager']), key: k });
    }
  }
  if (conflicts.length > 0) throw conflictError(conflicts);

  const appliedNoManaged = cloneJson(applied);
  delete appliedNoManaged.metadata.managedFields;
  const merged = mergeApplied(live ? (cloneJson(live) as unknown as Json) : undefined, appliedNoManaged as unknown as Json) as unknown as KubeObject;

  let mine = entries.find(isMine);
  if (mine) {
    const ownedByOthers = new Set(others.flatMap((e) => [...e.fields]));
    for (const k of mine.fields) {
      if (!appliedLeaves.has(k) && !ownedByOthers.has(k)) removePath(merged as unknown as JsonObject, k.split('\u0000'));
    }
  } else {
    mine = { entry: { manager, operation: 'Apply', apiVersion: applied.apiVersion ?? 'v1' }, fields: new Set() };
    entries.push(mine);
  }
  const next = new Set(appliedLeaves.keys());
  const same = next.size === mine.fields.size && [...next].every((k) => mine.fields.has(k));
  mine.fields = next;
  if (!same || mine.entry['time'] === undefined) mine.entry['time'] = now;
  writeManaged(merged, entries);
  return merged;
}

