// Every command's register function, in the order `atrest --help` lists them. Registering is cheap:
// each action loads its implementation with `await import()`, so a run loads only its own command's.
import type { Command } from 'commander';
import { registerKeygen } from './keygen.js';
import { registerKmsPlugin } from './kms-plugin.js';
import { registerGetRaw } from './get-raw.js';
import { registerServe } from './serve.js';
import { registerDev } from './dev.js';
import { registerVerify } from './verify.js';
import { registerRewrite } from './rewrite.js';
import { registerStatus } from './status.js';
import { registerRotate } from './rotate.js';
import { registerEncrypt, registerDecrypt } from './transform-value.js';
import { registerVersion } from './version.js';

export const commands: Array<(program: Command) => void> = [
  registerKeygen,
  registerKmsPlugin,
  registerEncrypt,
  registerDecrypt,
  registerGetRaw,
  registerVerify,
  registerRewrite,
  registerStatus,
  registerRotate,
  registerServe,
  registerDev,
  registerVersion,
];
