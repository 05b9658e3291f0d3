// `atrest rewrite`: re-encrypts every stale value of the selected resources in place with the
// current write provider (src/tools/rewrite.ts) — `kubectl get secrets -A -o json | kubectl replace
// -f -`, server-side, with compare-and-swap instead of conflicts. Refuses to start while the write
// provider's KMS plugin is unhealthy. Progress: a bar on a TTY, else a log line every few seconds.
// Exit codes (src/cli/exit-codes.ts): 0 every selected value ends current; 1 some do not
// (undecryptable, needing a retired KEK version, still changing, written meanwhile with an old key,
// or the kms v2 key_id changed during the run); 2 usage and configuration errors; 3 the run could
// not complete (the write provider's plugin is not healthy, a read provider's plugin or the store
// could not be reached, or the run was stopped): run it again.
import { Command, InvalidArgumentError, Option } from 'commander';
import type { SingleBar } from 'cli-progress';
import { messageOf } from '../errors.js';
import { normalizePrefix, parseStorageKey } from '../storage/keys.js';
import type { Store } from '../storage/types.js';
import type { GroupResource } from '../config/types.js';
import { DEFAULT_REWRITE_BATCH_SIZE } from '../tools/defaults.js';
import type { RewriteProgress, RewriteSummary } from '../tools/rewrite.js';
import { addEngineOptions, type EngineFlags } from './engine-options.js';
import type { WriteKmsProvider } from './engine.js';
import { EXIT_FOUND, EXIT_INCOMPLETE, REWRITE_EXIT_CODES, checkExitCode, exitCodesHelp, reportToolError } from './exit-codes.js';

interface RewriteFlags extends EngineFlags {
  batchSize: number;
  rate: number;
  dryRun?: boolean;
  output: 'text' | 'json';
}

/** Seconds between progress log lines when stderr is not a terminal. */
const LOG_EVERY_MS = 5000;

function nonNegativeInt(name: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

export function registerRewrite(program: Command): void {
  const command = program
    .command('rewrite')
    .description('re-encrypt every stale value in place with the current write provider (compare-and-swap, resumable)')
    .addHelpText('after', exitCodesHelp(REWRITE_EXIT_CODES));
  addEngineOptions(command)
    .addOption(new Option('--batch-size <n>', 'values listed and written per batch (one transaction on the embedded store)').argParser(nonNegativeInt('--batch-size', 1)).default(DEFAULT_REWRITE_BATCH_SIZE))
    .addOption(new Option('--rate <n>', 'at most this many writes per second (0: unlimited)').argParser(nonNegativeInt('--rate', 0)).default(0))
    .addOption(new Option('--dry-run', 'count what would be rewritten; write nothing'))
    .addOption(new Option('-o, --output <format>', 'summary as text or json').choices(['text', 'json']).default('text'))
    .action(async (flags: RewriteFlags) => {
      process.exitCode = await runRewrite(flags);
    });
}

async function runRewrite(flags: RewriteFlags): Promise<number> {
  const { createLogger } = await import('../log.js');
  const { RewriteError, formatRewriteSummary, rewriteStore } = await import('../tools/rewrite.js');
  const { openEngine } = await import('./engine.js');
  const log = createLogger('rewrite');
  const { CheckedReader } = await import('../storage/checked-read.js');
  const { isUnreachable } = await import('../storage/check-failure.js');
  let engine;
  try {
    engine = await openEngine(flags, { readonly: Boolean(flags.dryRun), log });
  } catch (err) {
    return reportToolError('rewrite', err);
  }
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const tty = Boolean(process.stderr.isTTY);
  const report = (summary: RewriteSummary): void => {
    if (!tty) {
      const { undecryptable, needsRetiredKey, retriesExhausted, ...counts } = summary;
      log.info({ event: 'rewrite-done', ...counts, undecryptable: undecryptable.length, needsRetiredKey: needsRetiredKey.length, retriesExhausted: retriesExhausted.length }, 'rewrite finished');
    }
    process.stdout.write(flags.output === 'json' ? JSON.stringify(summary, null, 2) + '\n' : formatRewriteSummary(summary));
  };
  let bar: SingleBar | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    await engine.ready();
    const writers = engine.writeKmsProviders();
    for (const writer of writers) {
      try {
        await writer.health.check();
      } catch (err) {
        process.stderr.write(
          // The probe's error names the provider, its plugin endpoint and "plugin unreachable" (src/kms/naming.ts).
          `atrest rewrite: refusing to start: the write provider of ${writer.resource} is not usable: ${messageOf(err)}\n`,
        );
        return EXIT_INCOMPLETE;
      }
    }

    let latest: RewriteProgress | undefined;
    if (tty) {
      const { default: cliProgress } = await import('cli-progress');
      const total = await countSelected(engine.store, flags.etcdPrefix, engine.selects);
      bar = new cliProgress.SingleBar(
        { stream: process.stderr, format: `${flags.dryRun ? 'dry run ' : ''}rewrite |{bar}| {value}/{total} scanned | {rewritten} rewritten | {conflicts} conflicts | {eta_formatted}`, hideCursor: true },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0, { rewritten: 0, conflicts: 0 });
    } else {
      log.info({ event: 'rewrite-start', dryRun: Boolean(flags.dryRun), batchSize: flags.batchSize, rate: flags.rate }, 'rewriting stale values');
      timer = setInterval(() => {
        if (latest) log.info({ event: 'rewrite-progress', ...latest }, 'rewrite progress');
      }, LOG_EVERY_MS);
      timer.unref();
    }

    let summary: RewriteSummary;
    try {
      summary = await rewriteStore({
        store: engine.store,
        transformers: engine.transformers,
        etcdPrefix: flags.etcdPrefix,
        selects: engine.selects,
        batchSize: flags.batchSize,
        rate: flags.rate,
        dryRun: Boolean(flags.dryRun),
        signal: abort.signal,
        reader: new CheckedReader(engine.kmsProviders()),
        recheckOtherWrites: true,
        // The key_ids the run writes with, asked at its start and end, to notice a rotation that lands meanwhile.
        keyIds: () => freshKeyIds(writers),
        onProgress: (p) => {
          latest = p;
          if (bar) {
            if (p.scanned > bar.getTotal()) bar.setTotal(p.scanned);
            bar.update(p.scanned, { rewritten: p.rewritten, conflicts: p.conflictsRetried });
          }
        },
      });
    } catch (err) {
      bar?.stop();
      bar = undefined;
      if (err instanceof RewriteError) {
        report(err.summary);
        process.stderr.write(`atrest rewrite: ${err.message}\n`);
        // A store failure or a stop leaves a run to resume; an encryption failure is one when the plugin went away.
        return err.code === 'REWRITE_ENCRYPT_FAILED' && !isUnreachable(err) ? EXIT_FOUND : EXIT_INCOMPLETE;
      }
      throw err;
    }
    bar?.stop();
    bar = undefined;
    report(summary);
    return checkExitCode(summary);
  } finally {
    bar?.stop();
    if (timer) clearInterval(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await engine.close();
  }
}

/** The key_id hash each kms v2 write provider reports now (a fresh Status each; unknown when it fails). */
export async function freshKeyIds(writers: readonly WriteKmsProvider[]): Promise<Map<string, string | undefined>> {
  const v2 = writers.filter((w) => w.apiVersion === 'v2');
  for (const w of v2) await w.refresh().catch(() => undefined);
  return new Map(v2.map((w) => [w.name, w.keyIdHash()]));
}

/** How many values the run will look at (for the progress bar's total; only on a terminal). */
async function countSelected(store: Store, etcdPrefix: string, selects: (gr: GroupResource) => boolean): Promise<number> {
  const prefix = normalizePrefix(etcdPrefix);
  let count = 0;
  let after: string | undefined;
  let revision: number | undefined;
  for (;;) {
    const page = await store.list(prefix + '/', { limit: 1000, ...(after !== undefined ? { after } : {}), ...(revision !== undefined ? { revision } : {}) });
    revision = page.revision;
    for (const kv of page.items) {
      try {
        if (selects(parseStorageKey(prefix, kv.key).groupResource)) count++;
      } catch {
        // not an object key
      }
    }
    if (!page.more || page.items.length === 0) return count;
    after = page.items[page.items.length - 1]?.key;
  }
}
