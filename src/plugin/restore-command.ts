// The `atrest kms-plugin restore-key` command line that brings a retired KEK version back, as the
// backends put it into their Decrypt refusals (a value under a retired version: gRPC
// FailedPrecondition, kms-handlers.ts) and `atrest rotate` prints after a retirement. One spelling for
// both, with the backend's own flags, so an operator can paste it. Never a secret: paths and labels
// only (the pkcs11 PIN stays in its file).

/** A word for a POSIX shell: as is when it is plain, else in single quotes. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9@%+=:,./_-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** `atrest kms-plugin restore-key --backend <name> <flag value>... --key-id <key_id>`. */
export function restoreKeyCommand(backend: string, flags: ReadonlyArray<readonly [string, string]>, keyId: string): string {
  return ['atrest', 'kms-plugin', 'restore-key', '--backend', backend, ...flags.flatMap(([flag, value]) => [flag, shellWord(value)]), '--key-id', shellWord(keyId)].join(' ');
}
