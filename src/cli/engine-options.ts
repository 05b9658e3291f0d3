// The flags the operator tools over stored data (`verify`, `rewrite`) share: the store and
// configuration flags (kube-apiserver's names, ATREST_… env vars) and the resource selection, and
// the error for their misuse. Opening what they name is engine.ts, loaded when a tool runs.
import { Option, type Command } from 'commander';
import { parseGroupResource } from '../config/group-resource.js';
import type { GroupResource } from '../config/types.js';
import { AtrestError } from '../errors.js';
import { DEFAULT_ETCD_PREFIX } from '../storage/keys.js';
import { DEFAULT_DATA_DIR } from '../storage/defaults.js';

/** The configuration flags (what `status --no-verify` and `decrypt` need without a store). */
export interface EngineConfigFlags {
  encryptionProviderConfig: string;
  resources?: string;
}

/** The store flags (`get-raw` and `decrypt` name a store with these alone): where storeLocation() (engine.ts) points. */
export interface StoreFlags {
  etcdServers?: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  dataDir?: string;
}

export interface EngineFlags extends EngineConfigFlags, StoreFlags {
  dataDir: string;
  etcdPrefix: string;
}

/** Adds the flags of EngineFlags to `command`. */
export function addEngineOptions(command: Command): Command {
  return command
    .addOption(new Option('--encryption-provider-config <file>', 'the EncryptionConfiguration in force').makeOptionMandatory())
    .addOption(new Option('--etcd-servers <urls>', 'comma-separated etcd client URLs (else the embedded store)'))
    .addOption(new Option('--etcd-cafile <file>', 'CA bundle of the etcd servers'))
    .addOption(new Option('--etcd-certfile <file>', 'client certificate for etcd'))
    .addOption(new Option('--etcd-keyfile <file>', 'client key for etcd'))
    .addOption(new Option('--data-dir <dir>', 'data directory of the embedded store').default(DEFAULT_DATA_DIR))
    .addOption(new Option('--etcd-prefix <prefix>', 'key prefix of the objects').default(DEFAULT_ETCD_PREFIX))
    .addOption(new Option('--resources <list>', 'comma-separated resources (e.g. secrets,configmaps)').default(undefined, 'those the configuration names'));
}

/** A usage or configuration problem (the tools exit 2 for these). */
export class ToolUsageError extends AtrestError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TOOL_USAGE', message, options);
  }
}

/** `--resources secrets,configmaps`: the named resources; none named is a usage error. */
export function parseResourceSelection(list: string): GroupResource[] {
  const wanted = list.split(',').map((r) => r.trim()).filter((r) => r !== '').map((r) => parseGroupResource(r));
  if (wanted.length === 0) throw new ToolUsageError('--resources: no resource named');
  return wanted;
}

/** Whether `gr` is one of `wanted`. */
export function isSelected(wanted: readonly GroupResource[], gr: GroupResource): boolean {
  return wanted.some((w) => w.resource === gr.resource && w.group === gr.group);
}
