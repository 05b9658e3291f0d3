// Runs the real kubectl (/usr/bin/kubectl: gcloud's dispatcher, which picks kubectl 1.32 from the
// server's /version) with a temporary HOME (its discovery cache) and the server's kubeconfig.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const KUBECTL = process.env['ATREST_TEST_KUBECTL'] ?? '/usr/bin/kubectl';

export function kubectlAvailable(): boolean {
  // In CI every dependency is installed by .ci/run: a missing one must fail the tests, not skip them.
  return process.env['CI'] === 'true' || existsSync(KUBECTL);
}

export interface KubectlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export class Kubectl {
  readonly home = mkdtempSync(join(tmpdir(), 'atrest-kubectl-home-'));

  constructor(readonly kubeconfig: string) {}

  run(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<KubectlResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(KUBECTL, args, {
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: this.home, KUBECONFIG: this.kubeconfig, ...options.env },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(options.input ?? '');
    });
  }

  /** Runs and fails (with kubectl's stderr) unless it exits 0; returns stdout. */
  async ok(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
    const r = await this.run(args, options);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** Runs and fails unless it exits non-zero; returns stderr. */
  async fails(args: string[], options: { input?: string } = {}): Promise<string> {
    const r = await this.run(args, options);
    if (r.code === 0) throw new Error(`kubectl ${args.join(' ')} unexpectedly succeeded: ${r.stdout}`);
    return r.stderr;
  }

  cleanup(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}
