// `atrest verify`: what protects every stored value of the selected resources. Reads the store at
// one revision, page by page, decrypts each value through the engine and tallies who wrote it
// (provider, key name, kms v2 key_id hash), how many are stale (not written by the current write
// provider and key) and which cannot be decrypted. Never prints a value.
import { messageOf } from '../errors.js';
import { groupResourceString } from '../config/group-resource.js';
import type { GroupResource } from '../config/types.js';
import type { Store } from '../storage/types.js';
import { normalizePrefix, parseStorageKey, type ParsedStorageKey } from '../storage/keys.js';
import type { ReadOrigin, TransformerSet } from '../transform/types.js';

export interface VerifyOptions {
  store: Store;
  transformers: TransformerSet;
  etcdPrefix: string;
  /** Which resources to look at. */
  selects(gr: GroupResource): boolean;
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

/** The API path of kube's unsafe delete of one object; undefined outside core/v1 (the version is not in the key). */
export function unsafeDeletePath(group: string, resource: string, namespace: string | undefined, name: string): string | undefined {
  if (group !== '') return undefined;
  const ns = namespace === undefined ? '' : `namespaces/${encodeURIComponent(namespace)}/`;
  return `/api/v1/${ns}${encodeURIComponent(resource)}/${encodeURIComponent(name)}?ignoreStoreReadErrorWithClusterBreakingPotential=true`;
}

export interface VerifyReport {
  revision: number;
  resources: ResourceReport[];
  /** Every value decrypts and is written by the current write provider and key. */
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
  const reports = new Map<string, ResourceReport>();
  let after: string | undefined;
  let revision: number | undefined;
  for (;;) {
    const page = await options.store.list(prefix + '/', { limit: options.pageSize ?? 500, after, revision });
    revision = page.revision;
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
        report = { resource: name, total: 0, writers: {}, plaintext: 0, stale: 0, undecryptable: [] };
        reports.set(name, report);
      }
      report.total++;
      try {
        const read = await options.transformers.forResource(gr).fromStorage(kv.value, Buffer.from(kv.key));
        const label = writerLabel(read.origin);
        report.writers[label] = (report.writers[label] ?? 0) + 1;
        options.onValue?.(kv.key, label);
        if (read.origin.provider === 'identity') report.plaintext++;
        if (read.stale) report.stale++;
      } catch (err) {
        const deletePath = unsafeDeletePath(gr.group, gr.resource, parsed.namespace, parsed.name);
        report.undecryptable.push({
          key: kv.key,
          error: messageOf(err),
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
  return {
    revision: revision ?? 0,
    resources,
    ok: resources.every((r) => r.stale === 0 && r.undecryptable.length === 0),
  };
}

/** The human-readable table: one block per resource. */
export function formatVerifyReport(report: VerifyReport): string {
  const lines: string[] = [];
  if (report.resources.length === 0) lines.push('no stored values of the selected resources');
  for (const r of report.resources) {
    lines.push(`${r.resource}: ${r.total} values, ${r.plaintext} plaintext, ${r.stale} stale, ${r.undecryptable.length} undecryptable`);
    const width = Math.max(6, ...Object.keys(r.writers).map((w) => w.length));
    lines.push(`  ${'WRITER'.padEnd(width)}  COUNT`);
    for (const [writer, count] of Object.entries(r.writers).sort()) lines.push(`  ${writer.padEnd(width)}  ${count}`);
    for (const u of r.undecryptable) {
      lines.push(`  undecryptable ${u.key}: ${u.error}`);
      // The way out when the key is gone for good (KEP-3926; docs/operator-guide.md, key-loss recovery).
      if (u.deletePath) lines.push(`    unsafe delete (serve with --feature-gates=AllowUnsafeMalformedObjectDeletion=true): kubectl delete --raw '${u.deletePath}'`);
    }
  }
  lines.push(report.ok ? 'OK: every value is written by the current write provider and key' : 'NOT OK: stale or undecryptable values remain (rewrite them, or check the keys)');
  return lines.join('\n') + '\n';
}

/** A Prometheus label value, escaped as the text exposition format asks. */
function labelValue(v: string): string {
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

/**
 * The report as Prometheus metrics in the text exposition format, for node_exporter's textfile
 * collector (`atrest verify --textfile <dir>/atrest_verify.prom`): counts only, never keys or values.
 */
export function formatVerifyTextfile(report: VerifyReport, nowMs: number): string {
  const out: string[] = [];
  const family = (name: string, help: string, samples: Array<[Record<string, string>, number]>): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [labels, value] of samples) {
      const l = Object.entries(labels).map(([k, v]) => `${k}=${labelValue(v)}`).join(',');
      out.push(`${name}${l ? `{${l}}` : ''} ${value}`);
    }
  };
  const rs = report.resources;
  family('atrest_verify_values', 'Stored values per resource and writer (provider:key, kms v2 with its key_id hash) at the last atrest verify run.',
    rs.flatMap((r) => Object.entries(r.writers).sort().map(([writer, n]): [Record<string, string>, number] => [{ resource: r.resource, writer }, n])));
  family('atrest_verify_plaintext_values', 'Stored values written unencrypted (identity) at the last atrest verify run.', rs.map((r) => [{ resource: r.resource }, r.plaintext]));
  family('atrest_verify_stale_values', 'Stored values not written by the current write provider and key (rewrite them) at the last atrest verify run.', rs.map((r) => [{ resource: r.resource }, r.stale]));
  family('atrest_verify_undecryptable_values', 'Stored values no configured provider can decrypt at the last atrest verify run.', rs.map((r) => [{ resource: r.resource }, r.undecryptable.length]));
  family('atrest_verify_ok', '1 when every value of the selected resources is written by the current write provider and key, else 0.', [[{}, report.ok ? 1 : 0]]);
  family('atrest_verify_last_run_timestamp_seconds', 'When atrest verify last completed a scan (Unix seconds).', [[{}, Math.floor(nowMs / 1000)]]);
  return out.join('\n') + '\n';
}
