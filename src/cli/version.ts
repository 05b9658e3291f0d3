// `atrest version` (and `atrest --version`): atrest's version from package.json, the Kubernetes
// version its API server reports at /version, and the runtime. `-o json` for scripts, as
// `kubectl version -o json`.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { KUBE_MINOR } from '../api/version.js';

let cached: string | undefined;

/** package.json's version: src/cli and dist/cli both sit two levels below it. */
export function atrestVersion(): string {
  if (cached === undefined) {
    try {
      cached = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
    } catch {
      cached = 'unknown';
    }
  }
  return cached;
}

export function versionReport(): { atrestVersion: string; kubernetesVersion: string; nodeVersion: string; platform: string } {
  return {
    atrestVersion: `v${atrestVersion()}`,
    kubernetesVersion: `v1.${KUBE_MINOR}`,
    nodeVersion: process.version,
    platform: `${process.platform}/${process.arch === 'x64' ? 'amd64' : process.arch}`,
  };
}

/** The one-line form (`atrest version`, `atrest --version`). */
export function versionText(): string {
  const v = versionReport();
  return `atrest ${v.atrestVersion} (Kubernetes API ${v.kubernetesVersion}, node ${v.nodeVersion}, ${v.platform})`;
}

export function registerVersion(program: Command): void {
  program
    .command('version')
    .description('print the atrest version, the Kubernetes API version its server speaks, and the runtime')
    .addOption(new Option('-o, --output <format>', 'text or json').choices(['text', 'json']).default('text'))
    .action((opts: { output: 'text' | 'json' }) => {
      const v = versionReport();
      process.stdout.write(opts.output === 'json' ? JSON.stringify(v, null, 2) + '\n' : versionText() + '\n');
    });
}
