// `atrest encrypt` / `atrest decrypt`: transform one value offline. (Filled in by the engine work.)
import type { Command } from 'commander';

export function registerEncrypt(_program: Command): void {}
export function registerDecrypt(_program: Command): void {}
