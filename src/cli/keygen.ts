// `atrest keygen`: a fresh random key, base64, for an aescbc/aesgcm/secretbox `secret`.
import { randomBytes } from 'node:crypto';
import { Command, InvalidArgumentError, Option } from 'commander';

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('print a fresh random key, standard base64, for an aescbc, aesgcm or secretbox key secret')
    .addOption(
      new Option('--bytes <n>', 'key length in bytes (16, 24 or 32; secretbox needs 32)')
        .default(32)
        .argParser((v) => {
          if (v !== '16' && v !== '24' && v !== '32') throw new InvalidArgumentError('must be 16, 24 or 32');
          return Number(v);
        }),
    )
    .action((opts: { bytes: number }) => {
      process.stdout.write(randomBytes(opts.bytes).toString('base64') + '\n');
    });
}
