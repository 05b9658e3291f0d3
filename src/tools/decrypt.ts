// `atrest decrypt` over many values: every live key of an etcd snapshot file, or a key prefix of a
// store. Each value is decrypted through the engine with its storage key as the authenticated data;
// the ones that fail are collected by key (never with their content). Output formats:
//   raw   one value: the plaintext bytes; several: per key a line with the key, then the plaintext
//         bytes and a newline (the layout of `etcdctl get --prefix` and `atrest get-raw --prefix`)
//   json  one value: the object; several: a v1 List of the objects, as `kubectl get -o json` prints
//   yaml  the same as YAML
// The output holds secret values in the clear: that is the command's purpose. Summaries and errors
// go to stderr and never hold a value.
import { stringify as toYaml } from 'yaml';
import { messageOf } from '../errors.js';
import type { GroupResource } from '../config/types.js';
import { normalizePrefix, parseStorageKey } from '../storage/keys.js';
import { listScanPage } from '../storage/scan.js';
import type { Store } from '../storage/types.js';
import type { ReadOrigin, TransformerSet } from '../transform/types.js';
import type { KubeObject } from '../k8s-objects/protobuf.js';
import { decodeStoredObject } from './k8s-object.js';
import type { OutputFormat } from './defaults.js';
import { CheckedReader, type NotChecked } from '../storage/checked-read.js';
import { writerLabel } from './verify.js';


export interface StoredValue {
  key: string;
  value: Buffer;
}

export interface DecryptedValue {
  key: string;
  plaintext: Buffer;
  origin: ReadOrigin;
  stale: boolean;
}

export interface KeyProblem {
  key: string;
  error: string;
}

export interface DecryptReport {
  decrypted: DecryptedValue[];
  undecryptable: KeyProblem[];
  /** Values the KMS plugin refused because the KEK version they need is retired (not lost: restore it). */
  needsRetiredKey: KeyProblem[];
  /** Values not read because their KMS plugin could not be reached (not known to be lost), by cause. */
  notChecked: NotChecked[];
  /** Keys under the prefix that are not `<prefix>/<resource>/[<namespace>/]<name>` object keys. */
  skipped: string[];
  /** Values of resources left out by the selection. */
  unselected: number;
}

export interface DecryptManyOptions {
  transformers: TransformerSet;
  etcdPrefix: string;
  /** Which resources to decrypt (default: all). */
  selects?(gr: GroupResource): boolean;
  /** Reads through this (it knows the kms providers and which are down); default: one without kms providers. */
  reader?: CheckedReader;
}

/** Decrypts every value under the etcd prefix, in the order given. */
export async function decryptValues(values: Iterable<StoredValue> | AsyncIterable<StoredValue>, options: DecryptManyOptions): Promise<DecryptReport> {
  const prefix = normalizePrefix(options.etcdPrefix);
  const reader = options.reader ?? new CheckedReader();
  const report: DecryptReport = { decrypted: [], undecryptable: [], needsRetiredKey: [], notChecked: [], skipped: [], unselected: 0 };
  for await (const { key, value } of values) {
    if (!key.startsWith(prefix + '/')) continue;
    let gr: GroupResource;
    try {
      gr = parseStorageKey(prefix, key).groupResource;
    } catch {
      report.skipped.push(key);
      continue;
    }
    if (options.selects && !options.selects(gr)) {
      report.unselected++;
      continue;
    }
    const outcome = await reader.read(options.transformers.forResource(gr), key, value);
    if (outcome.kind === 'read') {
      const read = outcome.result;
      report.decrypted.push({ key, plaintext: Buffer.from(read.plaintext), origin: read.origin, stale: read.stale });
    } else if (outcome.kind === 'undecryptable') {
      report.undecryptable.push({ key, error: oneLine(outcome.error) });
    } else if (outcome.kind === 'needs-retired-key') {
      report.needsRetiredKey.push({ key, error: oneLine(outcome.error) });
    }
  }
  report.notChecked = reader.notChecked();
  return report;
}

/** Every key under `keyPrefix` of a store, page by page at one revision (the current one once it is compacted). */
export async function* listStoreValues(store: Store, keyPrefix: string, pageSize = 500): AsyncGenerator<StoredValue> {
  let after: string | undefined;
  let revision: number | undefined;
  for (;;) {
    const page = await listScanPage(store, keyPrefix, { limit: pageSize, after, revision });
    revision = page.revision;
    for (const kv of page.items) yield { key: kv.key, value: Buffer.from(kv.value) };
    if (!page.more || page.items.length === 0) break;
    after = page.items[page.items.length - 1]?.key;
  }
}

export interface FormattedOutput {
  bytes: Buffer;
  /** Values that are not objects (json/yaml): they are left out of the output. */
  undecodable: KeyProblem[];
  /** Protobuf kinds decoded to apiVersion, kind and metadata only, with their counts. */
  partialKinds: Record<string, number>;
}

function decodeAll(values: DecryptedValue[]): { objects: KubeObject[]; undecodable: KeyProblem[]; partialKinds: Record<string, number> } {
  const objects: KubeObject[] = [];
  const undecodable: KeyProblem[] = [];
  const partialKinds: Record<string, number> = {};
  for (const v of values) {
    try {
      const stored = decodeStoredObject(v.plaintext);
      objects.push(stored.object);
      if (stored.partial) {
        const kind = `${stored.object.apiVersion ?? ''} ${stored.object.kind ?? ''}`.trim();
        partialKinds[kind] = (partialKinds[kind] ?? 0) + 1;
      }
    } catch (err) {
      undecodable.push({ key: v.key, error: oneLine(messageOf(err)) });
    }
  }
  return { objects, undecodable, partialKinds };
}

function render(value: unknown, format: 'json' | 'yaml'): Buffer {
  // kubectl indents JSON by four spaces
  return Buffer.from(format === 'json' ? JSON.stringify(value, null, 4) + '\n' : toYaml(value, { lineWidth: 0 }), 'utf8');
}

/** The output for one value. */
export function formatOne(value: DecryptedValue, format: OutputFormat): FormattedOutput {
  if (format === 'raw') return { bytes: value.plaintext, undecodable: [], partialKinds: {} };
  const { objects, undecodable, partialKinds } = decodeAll([value]);
  return { bytes: objects[0] ? render(objects[0], format) : Buffer.alloc(0), undecodable, partialKinds };
}

/** The output for several values. */
export function formatMany(values: DecryptedValue[], format: OutputFormat): FormattedOutput {
  if (format === 'raw') {
    const parts: Buffer[] = [];
    for (const v of values) parts.push(Buffer.from(v.key + '\n', 'utf8'), v.plaintext, Buffer.from('\n'));
    return { bytes: Buffer.concat(parts), undecodable: [], partialKinds: {} };
  }
  const { objects, undecodable, partialKinds } = decodeAll(values);
  return { bytes: render({ apiVersion: 'v1', items: objects, kind: 'List', metadata: { resourceVersion: '' } }, format), undecodable, partialKinds };
}

/** The stderr summary of a run over several values: counts per writer and every key that failed. */
export function summarize(source: string, report: DecryptReport, output: Pick<FormattedOutput, 'undecodable' | 'partialKinds'>): string {
  const writers: Record<string, number> = {};
  let stale = 0;
  for (const v of report.decrypted) {
    const label = writerLabel(v.origin);
    writers[label] = (writers[label] ?? 0) + 1;
    if (v.stale) stale++;
  }
  const unchecked = report.notChecked.reduce((n, c) => n + c.values, 0);
  const retired = report.needsRetiredKey.length;
  const lines = [`${source}: ${report.decrypted.length} values decrypted, ${report.undecryptable.length} undecryptable, ${stale} stale` +
    `${retired ? `, ${retired} need${retired === 1 ? 's' : ''} a retired KEK version` : ''}${unchecked ? `, ${unchecked} not checked` : ''}`];
  const byWriter = Object.entries(writers).sort(([a], [b]) => a.localeCompare(b)).map(([w, n]) => `${w} ${n}`);
  if (byWriter.length) lines.push(`  read by: ${byWriter.join(', ')}`);
  if (report.unselected) lines.push(`  ${report.unselected} values of other resources left out (--resources)`);
  if (report.skipped.length) lines.push(`  ${report.skipped.length} keys under the prefix are not object keys and were left out: ${report.skipped.slice(0, 5).join(', ')}${report.skipped.length > 5 ? ', ...' : ''}`);
  for (const [kind, n] of Object.entries(output.partialKinds)) lines.push(`  ${n} ${kind} objects are protobuf of a kind without a schema here: only apiVersion, kind and metadata are shown`);
  for (const u of report.undecryptable) lines.push(`  undecryptable ${u.key}: ${u.error}`);
  for (const u of report.needsRetiredKey) lines.push(`  needs a retired KEK version ${u.key}: ${u.error}`);
  if (retired) lines.push('  these values are NOT lost (they are left out of the output): restore the KEK version the message names and run it again.');
  for (const n of report.notChecked) lines.push(`  could not check ${n.values} value${n.values === 1 ? '' : 's'} (not known to be lost; they are left out of the output): ${oneLine(n.cause)}`);
  for (const u of output.undecodable) lines.push(`  not an object ${u.key}: ${u.error}`);
  return lines.join('\n') + '\n';
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}
