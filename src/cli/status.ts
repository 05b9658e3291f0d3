// `atrest status`: plugin health and key_id, the configuration's providers per resource and the
// verify counts in one table (or -o json). Uses the tools' engine (config, store, the kms health
// checks the API server runs) and verifyStore; the report and table are src/tools/status.ts.
// Exit 0 when every kms provider and plugin is healthy and (unless --no-verify) every value is
// current; 1 otherwise; 2 for usage and configuration errors, as `atrest verify`.
import { Command, Option } from 'commander';
import { messageOf } from '../errors.js';
import { addEngineOptions, ToolUsageError, type EngineFlags } from './engine-options.js';
import type { WriteKmsProvider } from './engine.js';

interface StatusFlags extends EngineFlags {
  output: 'table' | 'json';
  kmsPluginHealth?: string[];
  verify: boolean;
}

export function registerStatus(program: Command): void {
  const command = program
    .command('status')
    .description('show KMS provider and plugin health with their key_id, the providers per resource and the verify counts');
  addEngineOptions(command)
    .addOption(new Option('--kms-plugin-health <host:port...>', 'also ask these plugins\' --health-listen endpoints for health, key_id and key age'))
    .option('--no-verify', 'skip reading the stored values (the verify counts)')
    .addOption(new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table'))
    .action(async (flags: StatusFlags) => {
      const { openEngine } = await import('./engine.js');
      const { formatStatus, probePlugin, providerLabel } = await import('../tools/status.js');
      const { verifyStore } = await import('../tools/verify.js');
      let engine;
      try {
        engine = await openEngine(flags, { readonly: true });
      } catch (err) {
        if (!(err instanceof ToolUsageError)) throw err;
        process.stderr.write(`atrest status: ${messageOf(err)}\n`);
        process.exitCode = 2;
        return;
      }
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
          const error = await p.health.check().then(() => undefined, (err: unknown) => messageOf(err));
          // From the provider's last valid kms v2 Status answer (the check above asked for one).
          const keyIdHash = p.keyIdHash();
          return { name: p.name, apiVersion: p.apiVersion, resources, healthy: error === undefined, ...(error !== undefined ? { error } : {}), ...(keyIdHash ? { keyIdHash } : {}) };
        }));
        const plugins = await Promise.all((flags.kmsPluginHealth ?? []).map((a) => probePlugin(a)));
        const resources = engine.resourceRules().map((r) => ({ resource: r.resource, providers: r.providers.map(providerLabel) }));
        const verify = flags.verify
          ? await verifyStore({ store: engine.store, transformers: engine.transformers, etcdPrefix: flags.etcdPrefix, selects: engine.selects })
          : undefined;
        const ok = kmsProviders.every((p) => p.healthy) && plugins.every((p) => p.healthy) && (verify?.ok ?? true);
        const report = { kmsProviders, plugins, resources, ...(verify ? { verify } : {}), ok };
        process.stdout.write(flags.output === 'json' ? JSON.stringify(report, null, 2) + '\n' : formatStatus(report));
        if (!ok) process.exitCode = 1;
      } finally {
        await engine.close();
      }
    });
}
