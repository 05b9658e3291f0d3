// `npm run bench -- [--suite plugin|kmip|all] [--quick]`: runs the benchmark suites that exist so
// far, each in its own process (no assertions; they print their tables). The transformer, API
// server, rewrite and memory suites of the benchmarks issue are still to come.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const suites: Record<string, string> = {
  plugin: 'plugin.ts',
  kmip: 'kmip.ts',
};

const args = process.argv.slice(2);
const suiteArg = args.includes('--suite') ? args[args.indexOf('--suite') + 1] : 'all';
const quick = args.includes('--quick');
const selected = suiteArg === 'all' ? Object.keys(suites) : [suiteArg ?? ''];

let failed = false;
for (const name of selected) {
  const file = suites[name];
  if (!file) {
    process.stderr.write(`bench: unknown suite ${JSON.stringify(name)} (known: ${Object.keys(suites).join(', ')}, all)\n`);
    process.exit(2);
  }
  process.stdout.write(`\n== ${name} ==\n`);
  const script = fileURLToPath(new URL(file, import.meta.url));
  const run = spawnSync(process.execPath, ['--import', 'tsx', script, '--seconds', quick ? '1' : '3'], { stdio: 'inherit' });
  if (run.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
