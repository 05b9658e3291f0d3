// Issue #8 §6: when ATREST_TEST_LOG_DIR is set (scripts/test-all.sh sets it), helpers that spawn
// atrest processes append the child's log output (stderr; JSON pino lines) to files there, and
// tests register the secret values and key files they use; scripts/scan-test-logs.ts then checks
// that no captured log line contains any of them. STDOUT is not captured: `decrypt`/`get-raw`
// legitimately print plaintext there.
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import pino from 'pino';
import type { Logger } from '../../src/log.js';

const dir = (): string | undefined => process.env['ATREST_TEST_LOG_DIR'] || undefined;

/** Appends everything `stream` emits to `<dir>/<label>-<pid>-<n>.log` (no-op without the env var). */
let n = 0;
export function captureLog(label: string, stream: Readable): void {
  const d = dir();
  if (!d) return;
  const file = join(d, `${label.replace(/[^a-z0-9-]/gi, '_')}-${process.pid}-${n++}.log`);
  stream.on('data', (chunk: Buffer | string) => {
    try { appendFileSync(file, chunk); } catch { /* the dir may be gone after the run: capture is best effort */ }
  });
}

/** Registers a secret value (string or bytes) that must never appear in a log line. */
export function registerTestSecret(value: string | Uint8Array, label = 'secret'): void {
  const d = dir();
  if (!d) return;
  const b64 = Buffer.from(typeof value === 'string' ? Buffer.from(value, 'utf8') : value).toString('base64');
  try {
    appendFileSync(join(d, 'secrets.txt'), `${label.replace(/\s/g, '_')} ${b64}\n`);
  } catch { /* the dir may be gone (a bench run after the test run): registration is best effort */ }
}

/**
 * Registers the KEKs of a local-backend key file (atrest-local-kek/v1: versions[].key, base64) as
 * secrets; read now, since tests delete their temporary directories. Missing/unreadable: skipped.
 */
export function registerKeyFile(path: string): void {
  if (!dir()) return;
  try {
    const doc = JSON.parse(readFileSync(path, 'utf8')) as { versions?: Array<{ key?: string }> };
    for (const v of doc.versions ?? []) if (typeof v.key === 'string') registerTestSecret(Buffer.from(v.key, 'base64'), 'local-kek');
  } catch { /* not (yet) a key file */ }
}

/** The value following `--key-file` in CLI arguments, if any. */
export function keyFileArg(args: readonly string[]): string | undefined {
  const i = args.indexOf('--key-file');
  if (i >= 0) return args[i + 1];
  return args.find((a) => a.startsWith('--key-file='))?.slice('--key-file='.length);
}

/** For in-process servers: a debug-level JSON logger appending to the log dir; undefined without it. */
export function testLogger(component: string): Logger | undefined {
  const d = dir();
  if (!d) return undefined;
  return pino({ level: 'debug', base: { component } }, pino.destination({ dest: join(d, `${component}-${process.pid}-${n++}.log`), sync: true, mkdir: true }));
}
