// The atrest command line: one thin file per command (src/cli/<command>.ts), registered here.
import { Command, Option } from 'commander';
import { commands } from './commands.js';

export function buildProgram(): Command {
  const program = new Command('atrest')
    .description('Kubernetes encryption at rest with KMS envelope encryption: engine, KMS plugin, API server and operator tools')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str) })
    .addOption(new Option('--log-format <format>', 'log lines on stderr: text (the default on a terminal) or json (the default otherwise)').choices(['json', 'text']).env('ATREST_LOG_FORMAT'))
    // Every command's loggers read the format from ATREST_LOG_FORMAT (src/log.ts), so the flag,
    // wherever it stands on the command line, is handed on through it.
    .hook('preAction', (cmd) => {
      const format = cmd.opts<{ logFormat?: string }>().logFormat;
      if (format) process.env['ATREST_LOG_FORMAT'] = format;
    });
  for (const register of commands) register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
