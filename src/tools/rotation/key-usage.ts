// Which stored values still need a KEK version: from verifyStore's writer labels, where a kms v2
// value carries the hash of the key_id its DEK seed was wrapped with (`kms v2:<name>:sha256:…`).
// kms v1 values do not record their KEK version at all, an undecryptable value cannot be
// attributed, a value the plugin refused because its KEK version is retired still needs that version,
// and a value not checked (its KMS plugin unreachable) is unknown; all make retirement impossible to
// prove safe, so all count against it.
import type { VerifyReport } from '../verify.js';

/** How many keys of old-key values are kept to name in messages. */
const SAMPLE_KEYS = 5;

export interface KeyUsage {
  /** Values under an old key_id, per resource (only resources with some). */
  oldByResource: Map<string, number>;
  old: number;
  /** Storage keys of some of them. */
  oldSamples: string[];
  /** kms v1 values: their KEK version is unknown. */
  kmsV1: number;
  undecryptable: number;
  undecryptableSamples: string[];
  /** Values under a version retired earlier (a backup restored since): they still need it. */
  needsRetiredKey: number;
  needsRetiredKeySamples: string[];
  /** The key_id hashes of those versions (kms v2 values name theirs). */
  retiredKeyIdHashes: Set<string>;
  /** Values not checked because their KMS plugin (or the store) could not be reached, and why. */
  unchecked: number;
  uncheckedCauses: string[];
}

/** Collects storage keys of old-key values while verifyStore runs (its onValue hook). */
export function oldKeySampler(oldHashes: ReadonlySet<string>): { onValue(key: string, writer: string): void; samples: string[] } {
  const samples: string[] = [];
  return {
    samples,
    onValue(key, writer) {
      if (samples.length < SAMPLE_KEYS && isOldWriter(writer, oldHashes)) samples.push(key);
    },
  };
}

function isOldWriter(writer: string, oldHashes: ReadonlySet<string>): boolean {
  if (!writer.startsWith('kms v2:')) return false;
  const at = writer.lastIndexOf(':sha256:');
  return at >= 0 && oldHashes.has(writer.slice(at + 1));
}

export function keyUsage(report: VerifyReport, oldHashes: ReadonlySet<string>, oldSamples: string[]): KeyUsage {
  const usage: KeyUsage = {
    oldByResource: new Map(), old: 0, oldSamples, kmsV1: 0, undecryptable: 0, undecryptableSamples: [],
    needsRetiredKey: 0, needsRetiredKeySamples: [], retiredKeyIdHashes: new Set(),
    unchecked: report.notChecked.reduce((n, c) => n + c.values, 0), uncheckedCauses: report.notChecked.map((c) => c.cause),
  };
  for (const r of report.resources) {
    for (const [writer, count] of Object.entries(r.writers)) {
      if (writer.startsWith('kms v1:')) usage.kmsV1 += count;
      if (!isOldWriter(writer, oldHashes)) continue;
      usage.oldByResource.set(r.resource, (usage.oldByResource.get(r.resource) ?? 0) + count);
      usage.old += count;
    }
    usage.undecryptable += r.undecryptable.length;
    for (const u of r.undecryptable) if (usage.undecryptableSamples.length < SAMPLE_KEYS) usage.undecryptableSamples.push(u.key);
    usage.needsRetiredKey += r.needsRetiredKey.length;
    for (const v of r.needsRetiredKey) {
      if (usage.needsRetiredKeySamples.length < SAMPLE_KEYS) usage.needsRetiredKeySamples.push(v.key);
      if (v.keyIdHash !== undefined) usage.retiredKeyIdHashes.add(v.keyIdHash);
    }
  }
  return usage;
}

/** `secrets: 3, configmaps: 1`. */
export function perResource(counts: ReadonlyMap<string, number>): string {
  return [...counts].map(([r, n]) => `${r}: ${n}`).join(', ');
}
