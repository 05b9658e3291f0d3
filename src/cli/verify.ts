// `atrest verify`: which provider, key and key_id protect each stored value (src/tools/verify.ts).
// Exit 0 only when every value of the selected resources is written by the current write provider
// and key; 1 when stale or undecryptable values remain (or the store fails); 2 for usage and
// configuration errors, as `atrest rewrite`.
import { Command, Option } from 'commander';
import { messageOf } from '../errors.js';
import { addEngineOptions, ToolUsageError, type EngineFlags } from './engine-options.js';

interface VerifyFlags extends EngineFlags {
  output: 'table' | 'json';
  textfile?: string;
}

export function registerVerify(program: Command): void {
  const command = program
    .command('verify')
    .description('count, per resource, which provider/key/key_id protects each stored value; exit 0 only when all are current');
  addEngineOptions(command)
    .addOption(new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table'))
    .addOption(new Option('--textfile <file>', 'also write the counts as Prometheus metrics to <file> (atomically), for node_exporter\'s textfile collector, e.g. /var/lib/prometheus/node-exporter/atrest_verify.prom'))
    .action(async (flags: VerifyFlags) => {
      const { formatVerifyReport, formatVerifyTextfile, verifyStore } = await import('../tools/verify.js');
      const { openEngine } = await import('./engine.js');
      const { writeAtomic } = await import('../api/atomic-file.js');
      let engine;
      try {
        engine = await openEngine(flags, { readonly: true });
      } catch (err) {
        if (!(err instanceof ToolUsageError)) throw err;
        process.stderr.write(`atrest verify: ${messageOf(err)}\n`);
        process.exitCode = 2;
        return;
      }
      try {
        await engine.ready();
        const report = await verifyStore({ store: engine.store, transformers: engine.transformers, etcdPrefix: flags.etcdPrefix, selects: engine.selects });
        // Atomically: node_exporter's textfile collector never reads half a file.
        if (flags.textfile) await writeAtomic(flags.textfile, formatVerifyTextfile(report, Date.now()), 0o644);
        process.stdout.write(flags.output === 'json' ? JSON.stringify(report, null, 2) + '\n' : formatVerifyReport(report));
        if (!report.ok) process.exitCode = 1;
      } finally {
        await engine.close();
      }
    });
}
