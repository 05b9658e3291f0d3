// Issue #8 §6: when ATREST_TEST_LOG_DIR is set (scripts/test-all.sh sets it), helpers that spawn
// atrest processes append the child's log output (stderr; JSON pino lines) to files there,
// in-process servers and backends log there as JSON (inProcessLogger), and tests register the
// secret values and key files they use; scripts/scan-test-logs.ts then checks that no captured log
// line contains any of them. STDOUT is not captured: `decrypt`/`get-raw`
// legitimately print plaintext there.
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import pino from 'pino';
import { silentLogger, type Logger } from '../../src/log.js';

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

const secretLine = (value: string | Uint8Array, label: string): string =>
  `${label.replace(/\s/g, '_')} ${Buffer.from(typeof value === 'string' ? Buffer.from(value, 'utf8') : value).toString('base64')}\n`;

function appendSecrets(d: string, text: string): void {
  try {
    appendFileSync(join(d, 'secrets.txt'), text);
  } catch { /* the dir may be gone (a bench run after the test run): registration is best effort */ }
}

/** Registers a secret value (string or bytes) that must never appear in a log line. */
export function registerTestSecret(value: string | Uint8Array, label = 'secret'): void {
  const d = dir();
  if (d) appendSecrets(d, secretLine(value, label));
}

/** Secrets registered with registerTestSecretSoon, per log dir, not yet in secrets.txt. */
const pending = new Map<string, string[]>();
let flushTimer: NodeJS.Timeout | undefined;

/** Writes the secrets registerTestSecretSoon buffered (also run on exit and shortly after each registration). */
export function flushTestSecrets(): void {
  if (flushTimer) clearTimeout(flushTimer);
  flushTimer = undefined;
  for (const [d, lines] of pending) appendSecrets(d, lines.join(''));
  pending.clear();
}

/**
 * registerTestSecret for hot paths (the fake KMS sees a new DEK on every kms v1 write): buffered in
 * memory and appended in one write within 100 ms, when 1,000 are pending, and at exit, instead of
 * one file append per call.
 */
export function registerTestSecretSoon(value: string | Uint8Array, label = 'secret'): void {
  const d = dir();
  if (!d) return;
  const lines = pending.get(d) ?? [];
  lines.push(secretLine(value, label));
  pending.set(d, lines);
  if (lines.length >= 1000) flushTestSecrets();
  else if (flushTimer === undefined) {
    flushTimer = setTimeout(flushTestSecrets, 100);
    flushTimer.unref();
  }
}
process.on('exit', flushTestSecrets);

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

const inProcessLoggers = new Map<string, Logger>();

/**
 * The logger to give an in-process server or backend in a test: with ATREST_TEST_LOG_DIR, a JSON
 * logger to a file there (one per component and process), so scripts/scan-test-logs.ts reads what
 * it logs; silent otherwise.
 */
export function inProcessLogger(component: string): Logger {
  const d = dir();
  if (!d) return silentLogger();
  const id = `${d}\0${component}`;
  let log = inProcessLoggers.get(id);
  if (!log) inProcessLoggers.set(id, (log = testLogger(component) as Logger));
  return log;
}
