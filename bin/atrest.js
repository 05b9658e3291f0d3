#!/usr/bin/env node
// Entry point: the compiled CLI (npm ci runs `prepare`, which builds dist/).
import { main } from '../dist/cli/main.js';

main(process.argv).catch((err) => {
  process.stderr.write(`atrest: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
