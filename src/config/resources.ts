// Which providers apply to which resource (format.md §0 "Resource lookup", §3.3 masking):
// exact `group/resource` → `<group>/*` → `*.*`, else nothing (the caller stores such resources
// as plaintext with an encrypt-check identity). A plain resource listed in several entries gets
// the provider lists concatenated in entry order; a rule that an EARLIER wildcard already covers
// is an error (`resource "secrets" is masked by earlier rule "*."`), exactly as kube-apiserver
// checks it while building transformers.
import { ConfigError } from './errors.js';
import { goQuote } from './go-format.js';
import { groupResourceString, parseGroupResource } from './group-resource.js';
import type { EncryptionConfiguration, GroupResource, ProviderConfiguration } from './types.js';

export { ConfigError } from './errors.js';
export type { ConfigErrorCode } from './errors.js';
export { groupResourceString, parseGroupResource } from './group-resource.js';

export interface ResourceRule {
  /** As written in the file after parsing; wildcards are `resource: '*'` / `group: '*'`. */
  groupResource: GroupResource;
  /** Providers for this rule, entries' lists concatenated in file order. */
  providers: readonly ProviderConfiguration[];
}

export interface ResourceTable {
  /** The providers for a resource: exact → `<group>/*` → `*.*`; undefined when none applies. */
  providersFor(gr: GroupResource): ProviderConfiguration[] | undefined;
  /** Every configured rule, in the order first seen in the file. */
  readonly rules: readonly ResourceRule[];
}

class MapResourceTable implements ResourceTable {
  /** group → resource → providers; nested maps keep the hot lookup free of string building. */
  private readonly byGroup = new Map<string, Map<string, ProviderConfiguration[]>>();
  readonly rules: ResourceRule[] = [];

  get(gr: GroupResource): ProviderConfiguration[] | undefined {
    return this.byGroup.get(gr.group)?.get(gr.resource);
  }

  append(gr: GroupResource, providers: readonly ProviderConfiguration[]): void {
    let group = this.byGroup.get(gr.group);
    if (group === undefined) {
      group = new Map();
      this.byGroup.set(gr.group, group);
    }
    let list = group.get(gr.resource);
    if (list === undefined) {
      list = [];
      group.set(gr.resource, list);
      this.rules.push({ groupResource: { group: gr.group, resource: gr.resource }, providers: list });
    }
    list.push(...providers);
  }

  providersFor(gr: GroupResource): ProviderConfiguration[] | undefined {
    return this.get(gr) ?? this.get({ group: gr.group, resource: '*' }) ?? this.get(ANY);
  }
}

const ANY: GroupResource = { group: '*', resource: '*' };

/**
 * Builds the lookup table of a configuration. Throws ConfigError (CONFIG_INVALID) with kube's
 * masking text when a rule is shadowed by an earlier wildcard. The configuration is assumed
 * validated (loadEncryptionConfigFile/parseEncryptionConfig already ran this check).
 */
export function buildResourceTable(config: EncryptionConfiguration): ResourceTable {
  const table = new MapResourceTable();
  for (const entry of config.resources) {
    for (const resource of entry.resources) {
      const gr = parseGroupResource(resource);
      const groupWildcard: GroupResource = { group: gr.group, resource: '*' };
      for (const rule of [groupWildcard, ANY]) {
        if (table.get(rule) !== undefined) {
          throw new ConfigError(
            'CONFIG_INVALID',
            `resource ${goQuote(groupResourceString(gr))} is masked by earlier rule ${goQuote(groupResourceString(rule))}`,
          );
        }
      }
      table.append(gr, entry.providers);
    }
  }
  return table;
}

export interface ProviderRef {
  /** Index of the `resources` entry. */
  entry: number;
  /** Index within that entry's `providers`. */
  index: number;
  provider: ProviderConfiguration;
  /** For kms providers: 0-based position over all kms providers in the file (health check
   * `kms-provider-<i>`, KmsTransformerFactory's `index`). */
  kmsIndex?: number;
}

/** Every provider element in file order, so one transformer can be built per element. */
export function listProviders(config: EncryptionConfiguration): ProviderRef[] {
  const out: ProviderRef[] = [];
  let kms = 0;
  config.resources.forEach((entry, e) => {
    entry.providers.forEach((provider, i) => {
      const ref: ProviderRef = { entry: e, index: i, provider };
      if ('kms' in provider) ref.kmsIndex = kms++;
      out.push(ref);
    });
  });
  return out;
}

/** Whether any resource has a kms provider (only then are KMS clients needed). */
export function usesKms(config: EncryptionConfiguration): boolean {
  return config.resources.some((r) => r.providers.some((p) => 'kms' in p));
}
