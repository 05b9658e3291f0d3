// The KEK backend flags (`--backend` and every backend's own flags, each with its ATREST_… env
// var), shared by `atrest kms-plugin` and `atrest rotate`, and loading the chosen backend.
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { BackendFlag, BackendModule } from '../plugin/backend.js';
import { backendByName, backends } from '../plugin/backends/index.js';

/**
 * `--backend <name>` (default local) and the flags of every backend, but those in `omit` (e.g.
 * `--rotation-period`), then the `extra` flag sets (e.g. the key hierarchy's, for a serving plugin).
 */
export function addBackendFlags(cmd: Command, omit: readonly string[] = [], extra: ReadonlyArray<readonly BackendFlag[]> = []): Command {
  cmd.addOption(new Option('--backend <name>', 'where the key-encryption key lives').choices(backends.map((b) => b.name)).default('local').env('ATREST_KMS_PLUGIN_BACKEND'));
  const seen = new Set<string>();
  for (const flags of [...backends.map((b) => b.flags), ...extra]) {
    for (const flag of flags) {
      const option = new Option(flag.flags, flag.description).env(flag.env);
      if (omit.includes(option.long ?? '')) continue;
      if (flag.defaultValue !== undefined) option.default(flag.defaultValue);
      if (seen.has(option.attributeName())) continue; // two backends sharing a flag name share the option
      seen.add(option.attributeName());
      cmd.addOption(option);
    }
  }
  return cmd;
}

/** Loads the backend module named by `--backend`. */
export async function chooseBackend(name: string): Promise<BackendModule> {
  const backend = backendByName(name);
  if (!backend) throw new InvalidArgumentError(`--backend ${JSON.stringify(name)} is not one of ${backends.map((b) => b.name).join(', ')}`);
  return backend.load();
}
