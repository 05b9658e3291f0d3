// The exit codes of every atrest command, in one place (issue #20). The operator tools that check
// stored data — verify, status, rewrite, decrypt (and any later tool of that kind) — use all four:
//
//   0  all current (decrypt: every value decrypted)
//   1  a finding: stale, plaintext-where-encryption-is-configured or undecryptable values, or values
//      that need a retired KEK version (decrypt: a value that does not decrypt); for the other
//      commands: the command failed
//   2  usage or configuration error: a typo'd flag, a bad value, a bad or missing config file
//   3  the check could not complete: the store or a KMS plugin could not be reached (nothing is
//      known to be lost; fix the store or the plugin and run it again)
//
// 3 wins over 1: a run that found stale values but could not read the rest is incomplete. Every
// command exits 2 for usage errors (commander's own code is 1, which here means a finding), and a
// closed stdout/stderr pipe (`atrest … | head`) ends the process quietly with 141, the status a
// shell reports for a Go tool (kubectl, etcdctl) killed by SIGPIPE: 128 + 13.
import { CommanderError } from 'commander';
import { AtrestError, messageOf } from '../errors.js';
import { isUnreachable } from '../storage/check-failure.js';

export const EXIT_OK = 0;
export const EXIT_FOUND = 1;
export const EXIT_USAGE = 2;
export const EXIT_INCOMPLETE = 3;
/** 128 + SIGPIPE (13): what a shell shows for a process the signal ended. */
export const EXIT_BROKEN_PIPE = 141;

/** The checking tools' exit codes, for their --help (the README's table says the same). */
export const CHECK_EXIT_CODES: ReadonlyArray<readonly [number, string]> = [
  [EXIT_OK, 'every value is current'],
  [EXIT_FOUND, 'stale, plaintext (where a provider other than identity writes) or undecryptable values found, or values that need a retired KEK version (restore it; they are not lost)'],
  [EXIT_USAGE, 'usage or configuration error (a bad flag, a bad or missing configuration file)'],
  [EXIT_INCOMPLETE, 'the check could not complete: the store or a KMS plugin could not be reached (nothing is known to be lost; fix it and run again). 3 wins over 1'],
];

/** `atrest decrypt`: the same codes, with 1 meaning a value that does not decrypt. */
export const DECRYPT_EXIT_CODES: ReadonlyArray<readonly [number, string]> = [
  [EXIT_OK, 'every value decrypted (stale ones too: stderr says which)'],
  [EXIT_FOUND, 'a value does not decrypt (or needs a retired KEK version, or, with -o json|yaml, is not an object), or KEY is not found'],
  [EXIT_USAGE, 'usage or configuration error (a bad flag, a bad or missing configuration file)'],
  [EXIT_INCOMPLETE, 'the store or a KMS plugin could not be reached: those values could not be checked'],
];

/** `atrest rewrite`: the same codes, said of values it re-encrypts. */
export const REWRITE_EXIT_CODES: ReadonlyArray<readonly [number, string]> = [
  [EXIT_OK, 'every selected value ends current'],
  [EXIT_FOUND, 'some values did not end current: undecryptable, needing a retired KEK version (restore it), still changing after the retry limit, written during the run with an old key, or the kms v2 key_id changed during the run'],
  [EXIT_USAGE, 'usage or configuration error (a bad flag, a bad or missing configuration file)'],
  [EXIT_INCOMPLETE, 'the run could not complete: the write provider\'s plugin is not healthy, a KMS plugin or the store could not be reached, or the run was stopped (nothing is known to be lost; run it again). 3 wins over 1'],
];

/** `atrest rotate`: 1 and 3 as a rotation meets them. */
export const ROTATE_EXIT_CODES: ReadonlyArray<readonly [number, string]> = [
  [EXIT_OK, 'done (or nothing to do)'],
  [EXIT_FOUND, 'a check found values that still need an old KEK version: nothing was retired'],
  [EXIT_USAGE, 'usage or configuration error (flags, kubeconfig, a kms v1 provider, a backend the plugin does not serve)'],
  [EXIT_INCOMPLETE, 'could not complete (a wait timed out, a migration failed, a server or the store failed, interrupted): fix what the message says and run it again; it continues where it stopped'],
];

/** An "Exit codes:" paragraph for --help, wrapped to 80 columns like commander's own text. */
export function exitCodesHelp(codes: ReadonlyArray<readonly [number, string]>, width = 80): string {
  const lines = ['Exit codes:'];
  for (const [code, text] of codes) {
    let line = `  ${code}  `;
    for (const word of text.split(' ')) {
      if (line.length + word.length > width && line.trim().length > String(code).length) {
        lines.push(line.trimEnd());
        line = '     ';
      }
      line += `${word} `;
    }
    lines.push(line.trimEnd());
  }
  return `\n${lines.join('\n')}`;
}

/** True for a write to a closed pipe, anywhere in the cause chain. */
export function isBrokenPipe(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if ((e as NodeJS.ErrnoException).code === 'EPIPE') return true;
  }
  return false;
}

/**
 * The exit code for an error a command threw: 141 for a broken pipe, 2 for a usage error (commander's
 * parse errors, InvalidArgumentError, ToolUsageError), 3 when the store or a KMS plugin could not be
 * reached, else 1.
 */
export function exitCodeFor(err: unknown): number {
  if (isBrokenPipe(err)) return EXIT_BROKEN_PIPE;
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  if (err instanceof AtrestError && err.code === 'TOOL_USAGE') return EXIT_USAGE;
  if (isUnreachable(err)) return EXIT_INCOMPLETE;
  return EXIT_FOUND;
}

/** A finished check's exit code: 3 when it could not complete (3 wins over 1), 1 when something was found, else 0. */
export function checkExitCode(result: { complete: boolean; ok: boolean }): number {
  if (!result.complete) return EXIT_INCOMPLETE;
  return result.ok ? EXIT_OK : EXIT_FOUND;
}

/** Prints `atrest <command>: <message>` (one line) and returns the error's exit code. */
export function reportToolError(command: string, err: unknown): number {
  const code = exitCodeFor(err);
  if (code !== EXIT_BROKEN_PIPE) {
    const prefix = code === EXIT_INCOMPLETE ? 'could not complete: ' : '';
    process.stderr.write(`atrest ${command}: ${prefix}${messageOf(err).replace(/\s*\n\s*/g, ' ')}\n`);
  }
  return code;
}
