// JSON logs (pino) to stderr, one line per event. Never pass key material, DEKs, plaintext or
// secret values to a logger: log names, sizes, key_id hashes and error codes instead.
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(component: string, level: string = process.env['ATREST_LOG_LEVEL'] ?? 'info'): Logger {
  return pino({ level, base: { component }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
