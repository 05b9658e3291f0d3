// `atrest rotate`: the KEK rotation from start to finish (src/tools/rotation/lifecycle.ts) — a new
// KEK version, every API server on it, a StorageVersionMigration per resource with values under the
// old key_id, a check that none is left, the old version retired. Safe to run again at any point:
// it continues where it stopped. Progress goes to the log (stderr); the result line to stdout.
// Exit codes (as issue #20 defines them for every command): 0 done (or nothing to do), 1 a check
// found values that still need an old version, 2 usage or configuration, 3 could not complete (a
// wait timed out, a peer failed, interrupted) — run it again.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';
import type { BackendModule, BackendOptions } from '../plugin/backend.js';
import type { KubeClient } from '../tools/kube-client.js';
import type { RotationBackend, StepName } from '../tools/rotation/types.js';
import { addBackendFlags, chooseBackend } from './backend-options.js';
import { addEngineOptions, ToolUsageError, type EngineFlags } from './engine-options.js';
import { EXIT_FOUND, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, ROTATE_EXIT_CODES, exitCodesHelp } from './exit-codes.js';
import { goDurationArg } from './flags.js';

/** RotateError kinds and the outcomes here, as the exit codes every command shares (src/cli/exit-codes.ts). */
const EXIT = { ok: EXIT_OK, findings: EXIT_FOUND, usage: EXIT_USAGE, incomplete: EXIT_INCOMPLETE } as const;

interface RotateFlags extends EngineFlags {
  backend: string;
  kubeconfig?: string;
  context?: string;
  server?: string[];
  migrateWith: 'storageversionmigration' | 'rewrite';
  finish?: boolean;
  step?: StepName;
  timeout: number;
  pollInterval: number;
}

/** A positive Go duration (`30s`, `15m`) in milliseconds. */
function duration(flag: string): (value: string) => number {
  return goDurationArg((ms) => (ms > 0 ? undefined : `${flag} must be more than 0`), `${flag}: `);
}

export function registerRotate(program: Command): void {
  const command = program
    .command('rotate')
    .description('rotate the KEK end to end: new version, every API server on it, StorageVersionMigrations, verify, retire the old version; safe to rerun');
  addEngineOptions(command);
  // The same backend flags as kms-plugin, but the serving plugin's schedule.
  addBackendFlags(command, ['--rotation-period'])
    .addOption(new Option('--kubeconfig <file>', 'credentials for the API servers').default(undefined, '$KUBECONFIG, else ~/.kube/config'))
    .addOption(new Option('--context <name>', 'kubeconfig context').default(undefined, 'its current-context'))
    .addOption(new Option('--server <url...>', 'every API server (each one, not a load balancer)').default(undefined, 'the kubeconfig\'s server').env('ATREST_ROTATE_SERVERS').argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), ...v.split(',').filter((s) => s !== '')]))
    .addOption(new Option('--migrate-with <how>', 're-encrypt through the API server (StorageVersionMigration) or directly in the store (atrest rewrite\'s engine)').choices(['storageversionmigration', 'rewrite']).default('storageversionmigration'))
    .addOption(new Option('--finish', 'only finish a rotation in progress (e.g. after the plugin\'s --rotation-period made a version); never make a new version'))
    .addOption(new Option('--step <name>', 'run one step alone (retire always verifies first)').choices(['rotate-kek', 'wait', 'migrate', 'verify', 'retire']))
    .addOption(new Option('--timeout <duration>', 'how long each wait may take (plugins, API servers, each migration)').default(15 * 60_000, '15m').argParser(duration('--timeout')))
    .addOption(new Option('--poll-interval <duration>', 'how often waits look again').default(1000, '1s').argParser(duration('--poll-interval')))
    .addHelpText('after', exitCodesHelp(ROTATE_EXIT_CODES))
    .action(async (flags: RotateFlags) => {
      process.exitCode = await runRotate(flags);
    });
}

async function runRotate(flags: RotateFlags): Promise<number> {
  const { createLogger } = await import('../log.js');
  const log = createLogger('rotate');
  const fail = (exit: number, message: string, remedy?: string): number => {
    log.error({ event: 'rotate-failed', exitCode: exit, ...(remedy ? { remedy } : {}) }, message);
    process.stderr.write(`atrest rotate: ${message}\n${remedy ? `  what to do: ${remedy}\n` : ''}`);
    return exit;
  };
  let module: BackendModule;
  try {
    module = await chooseBackend(flags.backend);
  } catch (err) {
    return fail(EXIT.usage, messageOf(err));
  }
  if (!module.listKeys || !module.retireKey) return fail(EXIT.usage, `--backend ${module.name} cannot list or retire its KEK versions`);

  const { KubeClient, loadKubeconfig } = await import('../tools/kube-client.js');
  const servers: KubeClient[] = [];
  // kubectl's order: the flag (or ATREST_KUBECONFIG), then $KUBECONFIG (its first file), then ~/.kube/config.
  const kubeconfig = (flags.kubeconfig ?? process.env['KUBECONFIG'])?.split(':')[0] || join(homedir(), '.kube', 'config');
  try {
    const creds = loadKubeconfig(kubeconfig, flags.context);
    for (const url of flags.server?.length ? flags.server : [creds.server]) servers.push(new KubeClient(url, creds));
  } catch (err) {
    return fail(EXIT.usage, messageOf(err), 'give --kubeconfig with credentials for the API servers (atrest serve writes one to <data-dir>/admin.kubeconfig)');
  }

  const { openEngine } = await import('./engine.js');
  let engine;
  try {
    // The tool's own view of the plugins: Status every second, so it sees the rotation at once.
    engine = await openEngine(flags, {
      // The engine's own KMS chatter (seed rotations) only when something is wrong.
      readonly: flags.migrateWith !== 'rewrite', log: log.child({}, { level: 'warn' }),
      kmsIntervals: { statusHealthyMs: 1000, statusUnhealthyMs: 1000, probePositiveTtlMs: 500, probeNegativeTtlMs: 500 },
    });
  } catch (err) {
    for (const s of servers) s.close();
    return fail(err instanceof ToolUsageError ? EXIT.usage : EXIT.incomplete, messageOf(err));
  }
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await engine.ready();
    const { rotate } = await import('../tools/rotation/lifecycle.js');
    const { RotateError } = await import('../tools/rotation/types.js');
    const { verifyStore } = await import('../tools/verify.js');
    const { rewriteStore } = await import('../tools/rewrite.js');
    const ctx = { log };
    const options = flags as unknown as BackendOptions;
    const backend: RotationBackend = {
      name: module.name,
      listKeys: () => module.listKeys!(options, ctx),
      rotateKey: () => module.rotateKey(options, ctx),
      retireKey: (keyId) => module.retireKey!(options, ctx, keyId),
      // The backend's own spelling, as its plugin's Decrypt refusals print it (src/plugin/restore-command.ts).
      restoreCommand: (keyId) => (module.restoreKey ? module.restoreCommand?.(options, keyId) : undefined),
    };
    const { CheckedReader } = await import('../storage/checked-read.js');
    const base = { store: engine.store, transformers: engine.transformers, etcdPrefix: flags.etcdPrefix, selects: engine.selects };
    // Values whose KMS plugin cannot be reached are "not checked" (never undecryptable), and cost
    // one KMS timeout per provider, not one per value (issue #20).
    const reader = () => new CheckedReader(engine.kmsProviders());
    try {
      const result = await rotate({
        backend,
        providers: () => engine.writeKmsProviders(),
        // Retirement is checked over every resource of the configuration (scope 'all'), not only --resources.
        verify: (onValue, scope) => verifyStore({ ...base, ...(scope === 'all' ? { selects: engine.configures } : {}), onValue, reader: reader() }),
        rewrite: (onProgress) => rewriteStore({ ...base, signal: abort.signal, onProgress, reader: reader() }),
        migrateWith: flags.migrateWith,
        servers,
        finish: Boolean(flags.finish),
        ...(flags.step ? { only: flags.step } : {}),
        timeoutMs: flags.timeout,
        pollMs: flags.pollInterval,
        report: reporter(log),
        signal: abort.signal,
      });
      process.stdout.write(summary(result, flags.step));
      return EXIT.ok;
    } catch (err) {
      if (err instanceof RotateError) return fail(EXIT[err.kind], err.message, err.remedy);
      return fail(EXIT.incomplete, messageOf(err), 'fix the cause and run atrest rotate again: it continues where it stopped');
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const s of servers) s.close();
    await engine.close();
  }
}

function reporter(log: Logger) {
  let current: string | undefined;
  return {
    step(n: number, of: number, title: string) {
      current = `${n}/${of}`;
      log.info({ event: 'rotate-step', step: current }, `[${current}] ${title}`);
    },
    line(text: string) {
      log.info({ event: 'rotate-progress', ...(current ? { step: current } : {}) }, `  ${text}`);
    },
  };
}

function summary(r: { currentKeyId: string; rotated: boolean; retired: Array<{ keyId: string }>; nothingToDo: boolean }, step?: StepName): string {
  if (r.nothingToDo) return `nothing to do: ${r.currentKeyId} is the only active KEK version\n`;
  if (step !== undefined && step !== 'retire') return `step ${step} done; current KEK version ${r.currentKeyId}\n`;
  return `rotation complete: current KEK version ${r.currentKeyId}${r.retired.length ? `; retired ${r.retired.map((v) => v.keyId).join(', ')}` : ''}\n`;
}
