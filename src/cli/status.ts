// `atrest status`: plugin health and key_id, the configuration's providers per resource and the
// verify counts in one table (or -o json). Uses the tools' engine (config, store, the kms health
// checks the API server runs) and verifyStore; the report and table are src/tools/status.ts.
// Exit 0 when every kms provider and plugin is healthy and (unless --no-verify) every value is
// current; 1 otherwise; 2 for usage and configuration errors, as `atrest verify`.
import { Command, Option } from 'commander';
import { messageOf } from '../errors.js';
import { addEngineOptions, ToolUsageError, type EngineFlags } from './engine-options.js';

interface StatusFlags extends EngineFlags {
  output: 'table' | 'json';
  kmsPluginHealth?: string[];
  verify: boolean;
}

const STATUS_KEY_METRIC = 'apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds';

export function registerStatus(program: Command): void {
  const command = program
    .command('status')
    .description('show KMS provider and plugin health with their key_id, the providers per resource and the verify counts');
  addEngineOptions(command)
    .addOption(new Option('--kms-plugin-health <host:port...>', 'also ask these plugins\' --health-listen endpoints for health, key_id and key age'))
    .option('--no-verify', 'skip reading the stored values (the verify counts)')
    .addOption(new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table'))
    .action(async (flags: StatusFlags) => {
      const { newRegistry } = await import('../metrics.js');
      const { openEngine } = await import('./engine.js');
      const { formatStatus, probePlugin, providerLabel } = await import('../tools/status.js');
      const { verifyStore } = await import('../tools/verify.js');
      const metrics = newRegistry();
      let engine;
      try {
        engine = await openEngine(flags, { readonly: true, metrics });
      } catch (err) {
        if (!(err instanceof ToolUsageError)) throw err;
        process.stderr.write(`atrest status: ${messageOf(err)}\n`);
        process.exitCode = 2;
        return;
      }
      try {
        await engine.ready();
        // One row per kms write provider (several resources may share one).
        const byName = new Map<string, { name: string; apiVersion: string; resources: string[]; check: () => Promise<void> }>();
        for (const p of engine.writeKmsProviders()) {
          const row = byName.get(p.name) ?? { name: p.name, apiVersion: p.apiVersion, resources: [], check: () => p.health.check() };
          row.resources.push(p.resource);
          byName.set(p.name, row);
        }
        const kmsProviders = await Promise.all([...byName.values()].map(async (p) => {
          const error = await p.check().then(() => undefined, (err: unknown) => messageOf(err));
          return { name: p.name, apiVersion: p.apiVersion, resources: p.resources, healthy: error === undefined, ...(error !== undefined ? { error } : {}) };
        }));
        // The kms v2 Status answers recorded the key_id hash (kube's metric; newest per provider).
        const seen = (await metrics.getSingleMetric(STATUS_KEY_METRIC)?.get())?.values ?? [];
        for (const p of kmsProviders) {
          const newest = seen.filter((v) => v.labels['provider_name'] === p.name).sort((a, b) => b.value - a.value)[0];
          const hash = newest?.labels['key_id_hash'];
          if (typeof hash === 'string' && hash !== '') Object.assign(p, { keyIdHash: hash });
        }
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
