// Logs (pino) to stderr, one line per event: JSON (the default off a terminal, for log shippers)
// or human text lines (the default when stderr is a TTY; `--log-format text|json` or
// ATREST_LOG_FORMAT chooses explicitly). The text format is rendered from pino's serialized JSON
// line, so whatever pino drops or redacts is dropped or redacted in both. Never pass key material,
// DEKs, plaintext or secret values to a logger: log names, sizes, key_id hashes and error codes.
import pino from 'pino';

export type Logger = pino.Logger;
export type LogFormat = 'json' | 'text';

/** ATREST_LOG_FORMAT if set (json or text), else text on a terminal and JSON otherwise. */
export function defaultLogFormat(env: NodeJS.ProcessEnv = process.env, stderrIsTty: boolean = process.stderr.isTTY === true): LogFormat {
  const v = env['ATREST_LOG_FORMAT'];
  if (v === 'json' || v === 'text') return v;
  return stderrIsTty ? 'text' : 'json';
}

export function createLogger(
  component: string,
  level: string = process.env['ATREST_LOG_LEVEL'] ?? 'info',
  format: LogFormat = defaultLogFormat(),
  /**
   * Write each line before returning (JSON lines are otherwise written in the background, through
   * libuv's thread pool): for the last lines of a process that ends itself at once (SIGKILL).
   */
  sync = false,
): Logger {
  const options = { level, base: { component }, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === 'text') {
    // The same SonicBoom destination as JSON (it retries EAGAIN on a full pipe and flushes on exit).
    const stderr = endOnBrokenPipe(pino.destination({ fd: 2, sync: true }));
    return pino(options, textDestination((line) => stderr.write(line)));
  }
  return pino(options, endOnBrokenPipe(pino.destination(sync ? { dest: 2, sync: true } : 2)));
}

/**
 * A closed stderr pipe (`atrest … 2>&1 | head`) ends the process the way SIGPIPE ends a Unix tool:
 * quietly, with 128 + 13 (src/cli/exit-codes.ts). Without a listener SonicBoom's EPIPE would be an
 * uncaught exception with a stack trace nobody can read.
 */
function endOnBrokenPipe<T extends { on(event: 'error', listener: (err: Error) => void): unknown }>(destination: T): T {
  destination.on('error', (err: Error) => {
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') process.exit(141);
    throw err;
  });
  return destination;
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** A pino destination that turns each JSON line into a text line and hands it to `write`. */
export function textDestination(write: (line: string) => void): { write(chunk: string): void } {
  return { write: (chunk) => { for (const l of chunk.split('\n')) if (l !== '') write(formatTextLine(l) + '\n'); } };
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/**
 * `2026-12-02T02:50:01.123Z INFO  kms-plugin: kms plugin serving event=start listen=unix:///run/kms.sock`:
 * time, level, component, message, then the other fields as key=value (values with spaces, quotes
 * or control characters JSON-quoted, objects as JSON) so a line stays one line and greppable.
 */
export function formatTextLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return escapeControl(json);
  }
  const { time, level, component, msg, ...rest } = rec;
  const levelName = typeof level === 'number' ? LEVELS[level] ?? `L${level}` : String(level ?? '');
  const head = [
    typeof time === 'string' ? time : typeof time === 'number' ? new Date(time).toISOString() : '',
    levelName.padEnd(5),
    component !== undefined ? `${String(component)}:` : '',
  ].filter((p) => p !== '').join(' ');
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${fieldValue(v)}`);
  const message = msg === undefined ? '' : escapeControl(String(msg));
  return [head, message, ...fields].filter((p) => p !== '').join(' ');
}

function fieldValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=\\\p{Cc}]+$/u.test(v) ? v : JSON.stringify(v);
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

function escapeControl(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}
