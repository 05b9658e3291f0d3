// Every command's register function, in the order `atrest --help` lists them.
import type { Command } from 'commander';
import { registerKeygen } from './keygen.js';
import { registerEncrypt, registerDecrypt } from './transform-value.js';

export const commands: Array<(program: Command) => void> = [
  registerKeygen,
  registerEncrypt,
  registerDecrypt,
];
