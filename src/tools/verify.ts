// `atrest verify`: what protects every stored value of the selected resources. Reads the store at
// one revision, page by page, decrypts each value through the engine and tallies who wrote it
// (provider, key name, kms v2 key_id hash), how many are stale (not written by the current write
// provider and key), which cannot be decrypted, which need a retired KEK version (the plugin refused
// them until it is restored: not lost, no unsafe-delete advice), and which could not be checked
// because their KMS plugin could not be reached (src/storage/checked-read.ts: those are never called
// undecryptable).
// A store that fails mid-scan stops the check (CheckIncompleteError). Never prints a value.
import { messageOf } from '../errors.js';
import { groupResourceString } from '../config/group-resource.js';
import type { GroupResource } from '../config/types.js';
import { isStoreError } from '../storage/errors.js';
import { listScanPage } from '../storage/scan.js';
import type { ListResult, Store } from '../storage/types.js';
import { normalizePrefix, parseStorageKey, type ParsedStorageKey } from '../storage/keys.js';
import type { ReadOrigin, TransformerSet } from '../transform/types.js';
import { CheckIncompleteError } from '../storage/check-failure.js';
import { CheckedReader, type NotChecked } from '../storage/checked-read.js';

export interface VerifyOptions {
  store: Store;
  transformers: TransformerSet;
  etcdPrefix: string;
  /** Which resources to look at. */
  selects(gr: GroupResource): boolean;
  /** Reads through this (it knows the kms providers and which are down); default: one without kms providers. */
  reader?: CheckedReader;
  pageSize?: number;
  /** Called with every value that decrypted: its storage key and writer label (`atrest rotate` names leftovers with it). */
  onValue?(key: string, writer: string): void;
}

export interface ResourceReport {
  /** `secrets`, or `deployments.apps` for non-core groups. */
  resource: string;
  total: number;
  /** Count per writer: `identity`, `aesgcm:key1`, `kms v2:name:sha256:…`. */
  writers: Record<string, number>;
  plaintext: number;
  stale: number;
  undecryptable: UndecryptableValue[];
  /** Values the KMS plugin refused because the KEK version they need is retired: not lost, restore the version. */
  needsRetiredKey: RetiredKeyValue[];
  /** Values that could not be checked (their KMS plugin could not be reached): not known to be lost. */
  unchecked: number;
}

/**
 * A value no provider can read, with what the unsafe delete (KEP-3926) needs: resource, namespace
 * (absent for cluster-scoped kinds) and name, and for core/v1 kinds the API path to send it to
 * (`kubectl delete --raw "<deletePath>"` with the AllowUnsafeMalformedObjectDeletion gate on).
 */
export interface UndecryptableValue {
  key: string;
  error: string;
  /** `secrets`, or `deployments.apps` for non-core groups (as ResourceReport.resource). */
  resource: string;
  namespace?: string;
  name: string;
  /** core/v1 only: `/api/v1/namespaces/<ns>/<resource>/<name>?ignoreStoreReadErrorWithClusterBreakingPotential=true`. */
  deletePath?: string;
}

/**
 * A value that needs a retired KEK version: the plugin refused it until the version is restored.
 * No delete path on purpose: the value is not lost.
 */
export interface RetiredKeyValue {
  key: string;
  /** The refusal, naming the key_id and (from atrest's plugin) the restore-key command. */
  error: string;
  /** `sha256:` hash of the key_id the value needs (kms v2; kms v1 values do not record it). */
  keyIdHash?: string;
  resource: string;
  namespace?: string;
  name: string;
}

/** The API path of kube's unsafe delete of one object; undefined outside core/v1 (the version is not in the key). */
export function unsafeDeletePath(group: string, resource: string, namespace: string | undefined, name: string): string | undefined {
  if (group !== '') return undefined;
  const ns = namespace === undefined ? '' : `namespaces/${encodeURIComponent(namespace)}/`;
  return `/api/v1/${ns}${encodeURIComponent(resource)}/${encodeURIComponent(name)}?ignoreStoreReadErrorWithClusterBreakingPotential=true`;
}

export interface VerifyReport {
  revision: number;
  resources: ResourceReport[];
  /** Why values could not be checked, with how many (one entry per cause, e.g. per kms provider down). */
  notChecked: NotChecked[];
  /** Every selected value was read and checked. */
  complete: boolean;
  /** Complete, and every value decrypts and is written by the current write provider and key. */
  ok: boolean;
}

export function writerLabel(origin: ReadOrigin): string {
  if (origin.provider === 'identity') return 'identity';
  if (origin.provider === 'kms') {
    const base = `kms ${origin.kmsApiVersion ?? 'v1'}:${origin.name ?? ''}`;
    return origin.keyIdHash ? `${base}:${origin.keyIdHash}` : base;
  }
  return `${origin.provider}:${origin.name ?? ''}`;
}

export async function verifyStore(options: VerifyOptions): Promise<VerifyReport> {
  const prefix = normalizePrefix(options.etcdPrefix);
  const reader = options.reader ?? new CheckedReader();
  const reports = new Map<string, ResourceReport>();
  let after: string | undefined;
  let revision: number | undefined;
  let firstRevision: number | undefined;
  for (;;) {
    let page: ListResult;
    try {
      page = await listScanPage(options.store, prefix + '/', { limit: options.pageSize ?? 500, after, revision });
    } catch (err) {
      if (!isStoreError(err)) throw err;
      throw new CheckIncompleteError(`the store could not be read (listing ${prefix}/${after !== undefined ? ` after ${after}` : ''}): ${messageOf(err)}`, { cause: err });
    }
    revision = page.revision;
    firstRevision ??= page.revision;
    for (const kv of page.items) {
      let parsed: ParsedStorageKey;
      try {
        parsed = parseStorageKey(prefix, kv.key);
      } catch {
        continue; // not an object key (e.g. a compaction marker of another tool)
      }
      const gr = parsed.groupResource;
      if (!options.selects(gr)) continue;
      const name = groupResourceString(gr);
      let report = reports.get(name);
      if (!report) {
        report = { resource: name, total: 0, writers: {}, plaintext: 0, stale: 0, undecryptable: [], needsRetiredKey: [], unchecked: 0 };
        reports.set(name, report);
      }
      report.total++;
      const outcome = await reader.read(options.transformers.forResource(gr), kv.key, kv.value);
      if (outcome.kind === 'read') {
        const label = writerLabel(outcome.result.origin);
        report.writers[label] = (report.writers[label] ?? 0) + 1;
        options.onValue?.(kv.key, label);
        if (outcome.result.origin.provider === 'identity') report.plaintext++;
        if (outcome.result.stale) report.stale++;
      } else if (outcome.kind === 'unchecked') {
        report.unchecked++;
      } else if (outcome.kind === 'needs-retired-key') {
        report.needsRetiredKey.push({
          key: kv.key,
          error: outcome.error,
          ...(outcome.keyIdHash !== undefined ? { keyIdHash: outcome.keyIdHash } : {}),
          resource: name,
          ...(parsed.namespace !== undefined ? { namespace: parsed.namespace } : {}),
          name: parsed.name,
        });
      } else {
        const deletePath = unsafeDeletePath(gr.group, gr.resource, parsed.namespace, parsed.name);
        report.undecryptable.push({
          key: kv.key,
          error: outcome.error,
          resource: name,
          ...(parsed.namespace !== undefined ? { namespace: parsed.namespace } : {}),
          name: parsed.name,
          ...(deletePath ? { deletePath } : {}),
        });
      }
    }
    if (!page.more || page.items.length === 0) break;
    after = page.items[page.items.length - 1]?.key;
  }
  const resources = [...reports.values()].sort((a, b) => a.resource.localeCompare(b.resource));
  const notChecked = reader.notChecked();
  const complete = notChecked.length === 0;
  return {
    revision: firstRevision ?? 0,
    resources,
    notChecked,
    complete,
    ok: complete && resources.every((r) => r.stale === 0 && r.undecryptable.length === 0 && r.needsRetiredKey.length === 0),
  };
}

/** The human-readable table: one block per resource. */
export function formatVerifyReport(report: VerifyReport): string {
  const lines: string[] = [];
  if (report.resources.length === 0) lines.push('no stored values of the selected resources');
  for (const r of report.resources) {
    const retired = r.needsRetiredKey.length;
    lines.push(`${r.resource}: ${r.total} values, ${r.plaintext} plaintext, ${r.stale} stale, ${r.undecryptable.length} undecryptable` +
      `${retired ? `, ${retired} need${retired === 1 ? 's' : ''} a retired KEK version` : ''}${r.unchecked ? `, ${r.unchecked} not checked` : ''}`);
    const width = Math.max(6, ...Object.keys(r.writers).map((w) => w.length));
    lines.push(`  ${'WRITER'.padEnd(width)}  COUNT`);
    for (const [writer, count] of Object.entries(r.writers).sort()) lines.push(`  ${writer.padEnd(width)}  ${count}`);
    for (const u of r.undecryptable) {
      lines.push(`  undecryptable ${u.key}: ${u.error}`);
      // The way out when the key is gone for good (KEP-3926; docs/operator-guide.md, key-loss recovery).
      if (u.deletePath) lines.push(`    unsafe delete (serve with --feature-gates=AllowUnsafeMalformedObjectDeletion=true): kubectl delete --raw '${u.deletePath}'`);
    }
    // Never an unsafe-delete line here: these values come back with the key version.
    for (const v of r.needsRetiredKey) lines.push(`  needs a retired KEK version${v.keyIdHash ? ` (key_id ${v.keyIdHash})` : ''} ${v.key}: ${v.error}`);
  }
  lines.push(...retiredKeyLines(report.resources), ...notCheckedLines(report.notChecked), verifySummary(report));
  return lines.join('\n') + '\n';
}

/** How many values need each retired KEK version (by key_id hash; '' when the value does not record it). */
function retiredKeyCounts(resources: readonly ResourceReport[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of resources) for (const v of r.needsRetiredKey) counts.set(v.keyIdHash ?? '', (counts.get(v.keyIdHash ?? '') ?? 0) + 1);
  return counts;
}

/**
 * The "needs a retired KEK version" block of a report: per version, how many, and what to do (never
 * delete). `how`: where the restore command is to be found.
 */
export function retiredKeyLines(resources: readonly ResourceReport[], how = 'the plugin\'s message above names it and the `atrest kms-plugin restore-key` command'): string[] {
  const counts = retiredKeyCounts(resources);
  if (counts.size === 0) return [];
  return [
    ...[...counts].map(([hash, n]) => `${n} value${n === 1 ? ' needs' : 's need'} a retired KEK version${hash ? ` (key_id ${hash})` : ''}`),
    `  these values are NOT lost: restore the KEK version (${how}), run the check again, then re-encrypt them (atrest rewrite, or atrest rotate). Do not delete them.`,
  ];
}

/** The "could not check" block of a report: each cause, and that nothing is known to be lost. */
export function notCheckedLines(notChecked: readonly NotChecked[]): string[] {
  if (notChecked.length === 0) return [];
  return [
    ...notChecked.map((n) => `could not check ${n.values} value${n.values === 1 ? '' : 's'}: ${n.cause}`),
    '  these values are NOT known to be lost: do not delete them. Bring the KMS plugin back and run the check again.',
  ];
}

/** The findings of a report over every resource. */
export function verifyTotals(report: Pick<VerifyReport, 'resources'>): { stale: number; undecryptable: number; needsRetiredKey: number } {
  let stale = 0;
  let undecryptable = 0;
  let needsRetiredKey = 0;
  for (const r of report.resources) {
    stale += r.stale;
    undecryptable += r.undecryptable.length;
    needsRetiredKey += r.needsRetiredKey.length;
  }
  return { stale, undecryptable, needsRetiredKey };
}

/** The last line: OK, or what is wrong. */
export function verifySummary(report: VerifyReport): string {
  const { stale, undecryptable, needsRetiredKey: retired } = verifyTotals(report);
  const unchecked = report.notChecked.reduce((n, c) => n + c.values, 0);
  if (report.ok) return 'OK: every value is written by the current write provider and key';
  const found = [
    ...(stale ? [`${stale} stale (run atrest rewrite)`] : []),
    ...(retired ? [`${retired} need${retired === 1 ? 's' : ''} a retired KEK version (restore it, see above; not lost)`] : []),
    ...(undecryptable ? [`${undecryptable} undecryptable (restore the key that wrote them, see above)`] : []),
  ];
  if (!report.complete) return `INCOMPLETE: ${unchecked} value${unchecked === 1 ? '' : 's'} could not be checked (KMS plugin unreachable)${found.length ? `; of the rest: ${found.join(', ')}` : ''}`;
  return `NOT OK: ${found.join(', ')}`;
}

/** A Prometheus label value, escaped as the text exposition format asks. */
function labelValue(v: string): string {
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

/**
 * The report as Prometheus metrics in the text exposition format, for node_exporter's textfile
 * collector (`atrest verify --textfile <dir>/atrest_verify.prom`): counts only, never keys or values.
 * `report` undefined: a run that could not read the store; only the "check could not complete"
 * signal and the run's time are written. The value families are left out (no counts were made), so
 * the alerts on them resolve and AtrestVerifyIncomplete fires instead.
 */
export function formatVerifyTextfile(report: VerifyReport | undefined, nowMs: number): string {
  const out: string[] = [];
  const family = (name: string, help: string, samples: Array<[Record<string, string>, number]>): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [labels, value] of samples) {
      const l = Object.entries(labels).map(([k, v]) => `${k}=${labelValue(v)}`).join(',');
      out.push(`${name}${l ? `{${l}}` : ''} ${value}`);
    }
  };
  const rs = report?.resources;
  if (rs) {
    family('atrest_verify_values', 'Stored values per resource and writer (provider:key, kms v2 with its key_id hash) at the last atrest verify run.',
      rs.flatMap((r) => Object.entries(r.writers).sort().map(([writer, n]): [Record<string, string>, number] => [{ resource: r.resource, writer }, n])));
    family('atrest_verify_plaintext_values', 'Stored values written unencrypted (identity) at the last atrest verify run.', rs.map((r) => [{ resource: r.resource }, r.plaintext]));
    family('atrest_verify_stale_values', 'Stored values not written by the current write provider and key (rewrite them) at the last atrest verify run.', rs.map((r) => [{ resource: r.resource }, r.stale]));
    family('atrest_verify_undecryptable_values', 'Stored values no configured provider can decrypt (looked at and refused) at the last atrest verify run.', rs.map((r) => [{ resource: r.resource }, r.undecryptable.length]));
    family('atrest_verify_retired_key_values', 'Stored values a KMS plugin refused at the last atrest verify run because the KEK version they need is retired (restore it: atrest kms-plugin restore-key); not lost, not counted as undecryptable.', rs.map((r) => [{ resource: r.resource }, r.needsRetiredKey.length]));
    family('atrest_verify_unchecked_values', 'Stored values atrest verify could not check at its last run because their KMS plugin could not be reached (not known to be lost).', rs.map((r) => [{ resource: r.resource }, r.unchecked]));
  }
  family('atrest_verify_check_complete', '1 when the last atrest verify run checked every selected value; 0 when a KMS plugin or the store could not be reached (the other counts are then partial or absent).', [[{}, report?.complete ? 1 : 0]]);
  family('atrest_verify_ok', '1 when the last run was complete and every value of the selected resources is written by the current write provider and key, else 0.', [[{}, report?.ok ? 1 : 0]]);
  family('atrest_verify_last_run_timestamp_seconds', 'When atrest verify last ran (complete or not; see atrest_verify_check_complete), Unix seconds.', [[{}, Math.floor(nowMs / 1000)]]);
  return out.join('\n') + '\n';
}

