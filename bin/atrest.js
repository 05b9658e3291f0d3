#!/usr/bin/env node
// Entry point: the compiled CLI (npm ci runs `prepare`, which builds dist/). main() reports errors
// and sets the exit code itself (src/cli/exit-codes.ts).
import { main } from '../dist/cli/main.js';

await main(process.argv);
