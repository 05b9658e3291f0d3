// `atrest verify`: which provider, key and key_id protect each stored value (src/tools/verify.ts).
// Exit codes (src/cli/exit-codes.ts): 0 every value current; 1 stale or undecryptable values; 2 usage
// and configuration errors; 3 the check could not complete (a KMS plugin or the store could not be
// reached: those values are "not checked", never "undecryptable").
import { Command, Option } from 'commander';
import { addEngineOptions, type EngineFlags } from './engine-options.js';
import { CHECK_EXIT_CODES, checkExitCode, EXIT_INCOMPLETE, exitCodesHelp, reportToolError } from './exit-codes.js';

interface VerifyFlags extends EngineFlags {
  output: 'table' | 'json';
  textfile?: string;
}

export function registerVerify(program: Command): void {
  const command = program
    .command('verify')
    .description('count, per resource, which provider/key/key_id protects each stored value; exit 0 only when all are current')
    .addHelpText('after', exitCodesHelp(CHECK_EXIT_CODES));
  addEngineOptions(command)
    .addOption(new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table'))
    .addOption(new Option('--textfile <file>', 'also write the counts as Prometheus metrics to <file> (atomically), for node_exporter\'s textfile collector: atrest_verify.prom in its directory (Debian: /var/lib/prometheus/node-exporter)'))
    .action(async (flags: VerifyFlags) => {
      process.exitCode = await runVerify(flags);
    });
}

async function runVerify(flags: VerifyFlags): Promise<number> {
  const { formatVerifyReport, formatVerifyTextfile, verifyStore } = await import('../tools/verify.js');
  const { CheckedReader } = await import('../storage/checked-read.js');
  const { openEngine } = await import('./engine.js');
  const { writeAtomic } = await import('../api/atomic-file.js');
  // Atomically: node_exporter's textfile collector never reads half a file.
  const textfile = (text: string) => (flags.textfile ? writeAtomic(flags.textfile, text, 0o644) : Promise.resolve());
  // One line on stderr; a check that could not complete also tells node_exporter so.
  const failed = async (err: unknown): Promise<number> => {
    const code = reportToolError('verify', err);
    if (code === EXIT_INCOMPLETE) await textfile(formatVerifyTextfile(undefined, Date.now()));
    return code;
  };
  let engine;
  try {
    engine = await openEngine(flags, { readonly: true });
  } catch (err) {
    return failed(err);
  }
  try {
    await engine.ready();
    let report;
    try {
      report = await verifyStore({
        store: engine.store, transformers: engine.transformers, etcdPrefix: flags.etcdPrefix, selects: engine.selects,
        reader: new CheckedReader(engine.kmsProviders()),
      });
    } catch (err) {
      return await failed(err); // awaited: the textfile is written before the engine closes
    }
    await textfile(formatVerifyTextfile(report, Date.now()));
    process.stdout.write(flags.output === 'json' ? JSON.stringify(report, null, 2) + '\n' : formatVerifyReport(report));
    return checkExitCode(report);
  } finally {
    await engine.close();
  }
}
