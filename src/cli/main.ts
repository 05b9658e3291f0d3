// The atrest command line: one thin file per command (src/cli/<command>.ts), registered here.
// Exit codes are src/cli/exit-codes.ts: usage errors exit 2 for every command, a closed output pipe
// ends the process quietly (141), other failures print one `atrest: …` line.
import { Command, CommanderError, Option } from 'commander';
import { messageOf } from '../errors.js';
import { commands } from './commands.js';
import { EXIT_BROKEN_PIPE, exitCodeFor, isBrokenPipe } from './exit-codes.js';
import { configureKubeFlags, kubeArgv } from './flags.js';
import { versionText } from './version.js';

/** Set once commander has printed a usage error itself (a parse error; not one an action threw). */
let usageErrorShown = false;

export function buildProgram(): Command {
  const program = new Command('atrest')
    .description('Kubernetes encryption at rest with KMS envelope encryption: engine, KMS plugin, API server and operator tools')
    .version(versionText(), '-V, --version', 'print the version (as atrest version)')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      outputError: (str, write) => {
        usageErrorShown = true;
        write(str);
      },
    })
    // Usage errors reach main's catch as CommanderErrors (exit 2); subcommands inherit this.
    .exitOverride((err) => {
      throw err;
    })
    .addOption(new Option('--log-format <format>', 'log lines on stderr: text for people or json for log shippers').choices(['json', 'text']).default(undefined, 'text on a terminal, else json').env('ATREST_LOG_FORMAT'))
    // Every command's loggers read the format from ATREST_LOG_FORMAT (src/log.ts), so the flag,
    // wherever it stands on the command line, is handed on through it.
    .hook('preAction', (cmd) => {
      const format = cmd.opts<{ logFormat?: string }>().logFormat;
      if (format) process.env['ATREST_LOG_FORMAT'] = format;
    });
  for (const register of commands) register(program);
  return configureKubeFlags(program);
}

/**
 * A write to a closed stdout or stderr (`atrest get-raw … | head`) ends the process as SIGPIPE ends
 * a Unix tool: at once, without a stack trace, with 141 (128 + 13). Node ignores SIGPIPE and
 * reports EPIPE instead; this turns it back into the conventional outcome.
 */
function endQuietlyOnBrokenPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: Error) => {
      if (isBrokenPipe(err)) process.exit(EXIT_BROKEN_PIPE);
      throw err;
    });
  }
}

export async function main(argv: string[]): Promise<void> {
  endQuietlyOnBrokenPipe();
  const program = buildProgram();
  try {
    await program.parseAsync(kubeArgv(program, argv));
  } catch (err) {
    const code = exitCodeFor(err);
    // commander has printed its own message for parse errors (and --help, --version exit 0); an
    // InvalidArgumentError an action threw is not printed by commander; a closed pipe shows nothing.
    const shown = err instanceof CommanderError && (usageErrorShown || err.exitCode === 0);
    if (!shown && code !== EXIT_BROKEN_PIPE) {
      process.stderr.write(`atrest: ${messageOf(err).replace(/\s*\n\s*/g, ' ')}\n`);
    }
    process.exit(code);
  }
}
