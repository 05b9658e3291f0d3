// Reading stored values for a check (verify, status, rewrite, decrypt of many values) so that a KMS
// outage is reported as "could not check", never as "undecryptable", and costs seconds, not a KMS
// timeout per value (issue #20).
//
// A value whose prefix names a kms provider (`k8s:enc:kms:v2:<name>:`) is read only once that
// provider has passed its health check (the check kube-apiserver mounts: kms v2 Status, kms v1
// Encrypt+Decrypt), asked once per provider, when its first value comes along. A provider that fails
// it is down for the rest of the run: its values are counted as not checked without a call. A read
// that fails for an unreachable-class reason (src/storage/check-failure.ts: a transport failure, a
// timeout, no DEK seed yet) marks its provider down the same way, so a plugin that dies in the middle
// of a run costs one timeout. A plugin's refusal because the KEK version the value needs is retired
// (gRPC FailedPrecondition) is `needs-retired-key`: not lost, restore the version; the provider stays
// in use. Every other failure is a verdict on the value: undecryptable.
import { messageOf } from '../errors.js';
import { kmsCauseText } from '../kms/naming.js';
import { reasonOf } from '../transform/errors.js';
import { kmsPrefix } from '../transform/build.js';
import type { TransformResult, Transformer } from '../transform/types.js';
import { isUnreachable, retiredKeyRefusal } from './check-failure.js';

/** A kms provider of the configuration, with its own health check. */
export interface KmsProviderProbe {
  name: string;
  apiVersion: 'v1' | 'v2';
  endpoint: string;
  /** kube-apiserver's probe of this provider; rejects with why it is not usable. */
  check(): Promise<void>;
}

export type ReadOutcome =
  | { kind: 'read'; result: TransformResult }
  /** Looked at and refused: no key or prefix matches, it does not authenticate, the plugin said no. */
  | { kind: 'undecryptable'; error: string }
  /**
   * The KMS plugin refused it because the KEK version it needs is retired (still restorable, or kept by
   * the key manager): not lost. `error` is the plugin's answer (it names the key_id and how to restore
   * it); `keyIdHash` the version's key_id hash (kms v2).
   */
  | { kind: 'needs-retired-key'; error: string; keyIdHash?: string }
  /** Could not be checked: the KMS plugin (or the store) could not be reached. Not known to be lost. */
  | { kind: 'unchecked'; cause: string };

/** Why values could not be checked, and how many: one entry per cause (per kms provider, usually). */
export interface NotChecked {
  cause: string;
  values: number;
}

interface Provider {
  probe: KmsProviderProbe;
  prefix: Buffer;
  /** The health check's verdict: undefined (usable) or why not; asked once. */
  verdict?: Promise<string | undefined>;
  /** Set when the provider turned out to be down; every later value of it is not checked. */
  down?: string;
}

export class CheckedReader {
  private readonly providers: Provider[];
  private readonly counts = new Map<string, number>();

  constructor(providers: readonly KmsProviderProbe[] = []) {
    // Longest prefix first: kms v1 names may contain ':' (and so one prefix may extend another).
    this.providers = providers
      .map((probe) => ({ probe, prefix: Buffer.from(kmsPrefix(probe)) }))
      .sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** Reads `value` (stored under `key`) with `transformer`, unless its kms provider is known to be down. */
  async read(transformer: Transformer, key: string, value: Uint8Array): Promise<ReadOutcome> {
    const provider = this.providerOf(value);
    if (provider) {
      const down = provider.down ?? (await this.verdict(provider));
      if (down !== undefined) return this.unchecked(down);
    }
    try {
      return { kind: 'read', result: await transformer.fromStorage(value, Buffer.from(key)) };
    } catch (err) {
      if (!isUnreachable(err)) {
        const retired = retiredKeyRefusal(err);
        if (retired) return { kind: 'needs-retired-key', error: messageOf(err), ...retired };
        return { kind: 'undecryptable', error: messageOf(err) };
      }
      if (!provider) return this.unchecked(reasonOf(err));
      provider.down ??= kmsCauseText(provider.probe, true, reasonOf(err));
      return this.unchecked(provider.down);
    }
  }

  /** Counts a value that could not be checked for `cause` (e.g. a store failure while reading it). */
  unchecked(cause: string): ReadOutcome {
    this.counts.set(cause, (this.counts.get(cause) ?? 0) + 1);
    return { kind: 'unchecked', cause };
  }

  /** Every cause of values not checked so far, with how many. */
  notChecked(): NotChecked[] {
    return [...this.counts].map(([cause, values]) => ({ cause, values }));
  }

  private providerOf(value: Uint8Array): Provider | undefined {
    return this.providers.find((p) => value.length >= p.prefix.length && p.prefix.equals(value.subarray(0, p.prefix.length)));
  }

  private verdict(provider: Provider): Promise<string | undefined> {
    provider.verdict ??= provider.probe.check().then(
      () => undefined,
      (err: unknown) => {
        provider.down ??= kmsCauseText(provider.probe, isUnreachable(err), reasonOf(err));
        return provider.down;
      },
    );
    return provider.verdict;
  }
}
