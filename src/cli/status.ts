// `atrest status`: plugin health and key_id, the configuration's providers per resource and the
// verify counts in one table (or -o json). Uses the tools' engine (config, store, the kms health
// checks the API server runs) and verifyStore; the report and table are src/tools/status.ts.
// `--verify=false` (`--no-verify`) opens no store at all. Exit codes (src/cli/exit-codes.ts): 0 all
// healthy and current; 1 stale or undecryptable values; 2 usage and configuration errors; 3 a KMS
// provider or plugin is not healthy, or the store could not be read (the check is incomplete).
import { Command, Option } from 'commander';
import { messageOf } from '../errors.js';
import { addEngineOptions, type EngineFlags } from './engine-options.js';
import type { Store } from '../storage/types.js';
import type { KmsEngine, WriteKmsProvider } from './engine.js';
import { CHECK_EXIT_CODES, EXIT_FOUND, EXIT_INCOMPLETE, EXIT_OK, exitCodesHelp, reportToolError } from './exit-codes.js';

interface StatusFlags extends EngineFlags {
  output: 'table' | 'json';
  kmsPluginHealth?: string[];
  verify: boolean;
}

export function registerStatus(program: Command): void {
  const command = program
    .command('status')
    .description('show KMS provider and plugin health with their key_id, the providers per resource and the verify counts')
    .addHelpText('after', exitCodesHelp(CHECK_EXIT_CODES.map(([code, text]) => [code, code === EXIT_INCOMPLETE ? `a KMS provider or plugin is not healthy, or ${text}` : text])));
  addEngineOptions(command)
    .addOption(new Option('--kms-plugin-health <host:port...>', 'also ask these plugins\' --health-listen endpoints for health, key_id and key age'))
    .addOption(new Option('--verify', 'read the stored values for the verify counts; --verify=false (or --no-verify) opens no store').default(true))
    .addOption(new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table'))
    .action(async (flags: StatusFlags) => {
      process.exitCode = await runStatus(flags);
    });
}

async function runStatus(flags: StatusFlags): Promise<number> {
  const { openKmsEngine, openToolStore, storeLocation } = await import('./engine.js');
  const { formatStatus, probePlugin, providerLabel, statusIncomplete, statusProblems } = await import('../tools/status.js');
  const { verifyStore } = await import('../tools/verify.js');
  const { CheckedReader } = await import('../storage/checked-read.js');
  const { isUnreachable } = await import('../storage/check-failure.js');
  let engine: KmsEngine;
  let loc;
  try {
    // Flag problems first (exit 2), before any connection is made.
    if (flags.verify) loc = storeLocation(flags, true);
    engine = await openKmsEngine(flags, {});
  } catch (err) {
    return reportToolError('status', err);
  }
  let store: Store | undefined;
  let storeError: string | undefined;
  try {
    await engine.ready();
    // One row per kms write provider (several resources may share one).
    const byName = new Map<string, { provider: WriteKmsProvider; resources: string[] }>();
    for (const p of engine.writeKmsProviders()) {
      const row = byName.get(p.name) ?? { provider: p, resources: [] };
      row.resources.push(p.resource);
      byName.set(p.name, row);
    }
    const kmsProviders = await Promise.all([...byName.values()].map(async ({ provider: p, resources }) => {
      const failure = await p.health.check().then(() => undefined, (err: unknown) => err);
      // From the provider's last valid kms v2 Status answer (the check above asked for one).
      const keyIdHash = p.keyIdHash();
      return {
        name: p.name, apiVersion: p.apiVersion, endpoint: p.endpoint, resources, healthy: failure === undefined,
        ...(failure !== undefined ? { error: messageOf(failure), unreachable: isUnreachable(failure) } : {}),
        ...(keyIdHash ? { keyIdHash } : {}),
      };
    }));
    const plugins = await Promise.all((flags.kmsPluginHealth ?? []).map((a) => probePlugin(a)));
    const resources = engine.resourceRules().map((r) => ({ resource: r.resource, providers: r.providers.map(providerLabel) }));
    let verify;
    if (loc) {
      try {
        store = await openToolStore(loc);
        verify = await verifyStore({
          store, transformers: engine.transformers, etcdPrefix: flags.etcdPrefix, selects: engine.selects,
          reader: new CheckedReader(engine.kmsProviders()),
        });
      } catch (err) {
        if (!reportsAsStoreFailure(err)) throw err;
        storeError = messageOf(err);
      }
    }
    const parts = { kmsProviders, plugins, resources, ...(verify ? { verify } : {}), ...(storeError !== undefined ? { storeError } : {}) };
    const problems = statusProblems(parts);
    const report = { ...parts, problems, ok: problems.length === 0 };
    process.stdout.write(flags.output === 'json' ? JSON.stringify(report, null, 2) + '\n' : formatStatus(report));
    if (statusIncomplete(report)) return EXIT_INCOMPLETE;
    return report.ok ? EXIT_OK : EXIT_FOUND;
  } finally {
    await store?.close();
    await engine.close();
  }
}

/** Store failures status reports in its table rather than as a one-line error (they make exit 3). */
function reportsAsStoreFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'UNAVAILABLE' || code === 'CHECK_INCOMPLETE';
}
