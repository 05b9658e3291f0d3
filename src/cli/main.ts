// The atrest command line: one thin file per command (src/cli/<command>.ts), registered here.
import { Command } from 'commander';
import { commands } from './commands.js';

export function buildProgram(): Command {
  const program = new Command('atrest')
    .description('Kubernetes encryption at rest with KMS envelope encryption: engine, KMS plugin, API server and operator tools')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str) });
  for (const register of commands) register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
