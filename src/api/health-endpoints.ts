// /healthz, /livez, /readyz like kube-apiserver: `ok` when every check passes; `?verbose` lists
// `[+]name ok` / `[-]name failed: reason withheld` lines and a summary; `/<endpoint>/<check>` runs one
// check; `?exclude=<name>` skips one. Reasons are logged, not shown (they may name internals).
// /livez carries no KMS checks (a KMS outage must not get the server restarted).
import type { HealthCheck } from '../health.js';
import type { Logger } from '../log.js';
import { messageOf } from '../errors.js';

export type HealthEndpoint = 'healthz' | 'livez' | 'readyz';

export interface HealthReply {
  code: number;
  text: string;
}

const CHECK_TIMEOUT_MS = 10_000;

async function run(check: HealthCheck): Promise<Error | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check.check(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`health check ${check.name} timed out`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  } finally {
    if (timer) clearTimeout(timer);
  }
}

export const pingCheck: HealthCheck = { name: 'ping', check: async () => {} };
export const logCheck: HealthCheck = { name: 'log', check: async () => {} };

/**
 * `checks` are the checks of this endpoint in display order. `sub` is the `/<endpoint>/<name>` part
 * (undefined for the endpoint itself).
 */
export async function runHealth(endpoint: HealthEndpoint, checks: HealthCheck[], sub: string | undefined, query: URLSearchParams, log: Logger): Promise<HealthReply | undefined> {
  if (sub !== undefined) {
    const check = checks.find((c) => c.name === sub);
    if (!check) return undefined;
    const err = await run(check);
    if (err) {
      log.warn({ endpoint, check: check.name, err: messageOf(err) }, 'health check failed');
      return { code: 500, text: `internal server error: ${check.name} check failed\n` };
    }
    return { code: 200, text: 'ok' };
  }
  const excluded = new Set(query.getAll('exclude'));
  const selected = checks.filter((c) => !excluded.has(c.name));
  const results = await Promise.all(selected.map(async (c) => ({ name: c.name, err: await run(c) })));
  const failed = results.filter((r) => r.err);
  for (const f of failed) log.warn({ endpoint, check: f.name, err: messageOf(f.err) }, 'health check failed');
  const verbose = query.has('verbose');
  if (failed.length === 0 && !verbose) return { code: 200, text: 'ok' };
  const lines = results.map((r) => (r.err ? `[-]${r.name} failed: reason withheld` : `[+]${r.name} ok`));
  for (const name of excluded) lines.push(`[+]${name} excluded: ok`);
  lines.push(failed.length === 0 ? `${endpoint} check passed` : `${endpoint} check failed`);
  return { code: failed.length === 0 ? 200 : 500, text: lines.join('\n') + '\n' };
}
