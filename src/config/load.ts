// Loading an EncryptionConfiguration file the way kube-apiserver does (format.md §3): read,
// refuse an empty file, decode strictly (YAML or JSON), default, validate every rule, check the
// cross-entry masking rule. Every failure is a ConfigError whose one-line message names the file:
//   error reading encryption provider configuration file "<path>": open <path>: no such file or directory
//   encryption provider configuration file "<path>" is empty
//   error decoding encryption provider configuration file "<path>": <cause>
//   error while parsing file "<path>": <field errors>            (kube: `error while parsing file: ...`)
//   error while building transformers for file "<path>": resource "secrets" is masked by earlier rule "*."
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { DecodeError, decodeEncryptionConfig } from './decode.js';
import { applyDefaults } from './defaults.js';
import { DocumentSyntaxError, parseDocumentBytes } from './document.js';
import { ConfigError } from './errors.js';
import { goQuote } from './go-format.js';
import { buildResourceTable } from './resources.js';
import type { LoadedConfig } from './types.js';
import { assertValidEncryptionConfiguration } from './validate.js';

export { ConfigError } from './errors.js';
export type { ConfigErrorCode } from './errors.js';

export interface LoadOptions {
  /** The file is loaded with automatic reload on: kms v1 provider names must be unique too. */
  reload?: boolean;
}

/** `sha256:<hex>` of the raw file bytes (reload detection, metrics). */
export function configContentHash(raw: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(raw).digest('hex');
}

/** Go's *PathError text for a failed os.ReadFile, from Node's error code. */
function readErrorText(path: string, err: unknown): { code: 'CONFIG_NOT_FOUND' | 'CONFIG_READ'; text: string } {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOENT':
      return { code: 'CONFIG_NOT_FOUND', text: `open ${path}: no such file or directory` };
    case 'EACCES':
    case 'EPERM':
      return { code: 'CONFIG_READ', text: `open ${path}: permission denied` };
    case 'EISDIR':
      return { code: 'CONFIG_READ', text: `read ${path}: is a directory` };
    case 'ENOTDIR':
      return { code: 'CONFIG_READ', text: `open ${path}: not a directory` };
    case 'ELOOP':
      return { code: 'CONFIG_READ', text: `open ${path}: too many levels of symbolic links` };
    case 'ENAMETOOLONG':
      return { code: 'CONFIG_READ', text: `open ${path}: file name too long` };
    default:
      return { code: 'CONFIG_READ', text: `open ${path}: ${typeof code === 'string' ? code : 'read failed'}` };
  }
}

/** Reads, decodes, defaults and validates the file at `path`. Throws ConfigError only. */
export async function loadEncryptionConfigFile(path: string, options: LoadOptions = {}): Promise<LoadedConfig> {
  let raw: Buffer;
  try {
    raw = await readFile(path);
  } catch (err) {
    const { code, text } = readErrorText(path, err);
    throw new ConfigError(code, oneLine(`error reading encryption provider configuration file ${goQuote(path)}: ${text}`), {
      path,
      cause: err,
    });
  }
  return parseEncryptionConfig(raw, path, options);
}

/** Collapses any line breaks so the message stays one line. */
function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, ' ');
}

/**
 * Decodes, defaults and validates configuration file content; `path` is only used in messages
 * and in the result. Throws ConfigError only.
 */
export function parseEncryptionConfig(raw: Buffer | string, path: string, options: LoadOptions = {}): LoadedConfig {
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
  if (bytes.length === 0) {
    throw new ConfigError('CONFIG_EMPTY', `encryption provider configuration file ${goQuote(path)} is empty`, { path });
  }
  const contentHash = configContentHash(bytes);

  let decoded;
  try {
    decoded = decodeEncryptionConfig(parseDocumentBytes(bytes));
  } catch (err) {
    // Only our own texts are shown: anything else (a YAML library surprise) might quote content.
    const cause = err instanceof DecodeError || err instanceof DocumentSyntaxError ? err.message : 'the document could not be decoded';
    throw new ConfigError('CONFIG_DECODE', `error decoding encryption provider configuration file ${goQuote(path)}: ${oneLine(cause)}`, {
      path,
    });
  }

  const config = applyDefaults(decoded);
  assertValidEncryptionConfiguration(config, path, options);
  try {
    buildResourceTable(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      throw new ConfigError('CONFIG_INVALID', `error while building transformers for file ${goQuote(path)}: ${err.message}`, { path });
    }
    throw err;
  }
  return { config, path, contentHash };
}
