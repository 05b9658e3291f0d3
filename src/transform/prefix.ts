// Prefix composition (format.md §0), kube-apiserver's `prefixTransformers`: a list of (prefix,
// transformer) entries that is itself a Transformer.
// - Write: always the FIRST entry; the stored value is `prefix ‖ entry output`.
// - Read: walk the entries in order; every entry whose prefix is a byte-prefix of the value gets the
//   value with the prefix stripped. The first success wins; an error of an empty-prefix (identity)
//   entry is skipped silently; other errors are collected and the walk continues, so two providers
//   of one kind with different keys are both tried. Nothing succeeded: the collected errors as one
//   aggregate, or the list's default error when no prefix matched at all.
// - A success through any entry but the first is stale (should be rewritten), as is one the entry
//   itself calls stale. Nesting (provider list → per-provider key list) gives staleness at both levels.
import type { TransformResult, Transformer } from './types.js';
import {
  TransformError, aggregateReason, codeOf, flattenErrors, reasonOf, storageKeyText, type TransformErrorCode,
} from './errors.js';

/** The reserved prefix of every encrypted value. */
export const ENCRYPTED_PREFIX = 'k8s:enc:';

/** Default texts of kube-apiserver's lists (config.go, transformer.go). */
export const ERR_NO_MATCHING_PREFIX = 'no matching prefix found';
export const ERR_NO_MATCHING_AES_KEY = 'no matching key was found for the provided AES transformer';
export const ERR_NO_MATCHING_SECRETBOX_KEY = 'no matching key was found for the provided Secretbox transformer';
export const ERR_NO_MATCHING_TRANSFORMER = 'the provided value does not match any of the supported transformers';

export interface PrefixEntry {
  prefix: Uint8Array;
  transformer: Transformer;
}

/**
 * A transformer that can write its output behind a header in the same buffer, so a prefix chain
 * does not copy the ciphertext once per prefix level.
 */
export interface HeaderWriter {
  toStorageWithHeader(header: Uint8Array, plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer>;
}

export function isHeaderWriter(t: Transformer): t is Transformer & HeaderWriter {
  return typeof (t as Partial<HeaderWriter>).toStorageWithHeader === 'function';
}

export interface PrefixTransformerOptions {
  /** Error when no entry's prefix matches (default: the generic transformer.go text). */
  defaultError?: string;
  defaultErrorCode?: TransformErrorCode;
  /**
   * Name the storage key in every error this chain throws (the resource-level chain does; nested
   * key lists do not, so an aggregate does not repeat the key once per provider).
   */
  nameStorageKey?: boolean;
}

export class PrefixTransformer implements Transformer, HeaderWriter {
  private readonly entries: readonly { prefix: Buffer; transformer: Transformer }[];
  private readonly first: { prefix: Buffer; transformer: Transformer };
  private readonly defaultError: string;
  private readonly defaultErrorCode: TransformErrorCode;
  private readonly nameStorageKey: boolean;

  constructor(entries: readonly PrefixEntry[], options: PrefixTransformerOptions = {}) {
    const own = entries.map((e) => ({ prefix: Buffer.from(e.prefix), transformer: e.transformer }));
    const first = own[0];
    if (first === undefined) throw new TypeError('a prefix transformer needs at least one entry');
    this.entries = own;
    this.first = first;
    this.defaultError = options.defaultError ?? ERR_NO_MATCHING_TRANSFORMER;
    this.defaultErrorCode = options.defaultErrorCode ?? 'NO_MATCHING_PREFIX';
    this.nameStorageKey = options.nameStorageKey ?? false;
  }

  /** The prefixes in order (for tools that report which provider wrote a value). */
  get prefixes(): Buffer[] {
    return this.entries.map((e) => e.prefix);
  }

  toStorage(plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer> {
    const { prefix, transformer } = this.first;
    const written = prefix.length === 0
      ? transformer.toStorage(plaintext, dataCtx)
      : this.writeBehind(prefix, plaintext, dataCtx);
    return this.nameStorageKey ? written.catch((err: unknown) => { throw this.writeError(err, dataCtx); }) : written;
  }

  toStorageWithHeader(header: Uint8Array, plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer> {
    const { prefix } = this.first;
    if (header.length === 0) return this.toStorage(plaintext, dataCtx);
    const combined = Buffer.allocUnsafe(header.length + prefix.length);
    combined.set(header, 0);
    combined.set(prefix, header.length);
    return this.writeBehind(combined, plaintext, dataCtx);
  }

  async fromStorage(stored: Uint8Array, dataCtx: Uint8Array): Promise<TransformResult> {
    let errors: unknown[] | undefined;
    for (let i = 0; i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      if (!hasPrefix(stored, entry.prefix)) continue;
      try {
        const result = await entry.transformer.fromStorage(stored.subarray(entry.prefix.length), dataCtx);
        // a new object rather than mutating: an inner transformer may hand out shared results
        return i === 0 || result.stale ? result : { ...result, stale: true };
      } catch (err) {
        // identity (empty prefix) refuses encrypted data; that must not hide the real providers' errors
        if (entry.prefix.length === 0) continue;
        (errors ??= []).push(err);
      }
    }
    throw this.readError(errors, dataCtx);
  }

  private writeBehind(header: Uint8Array, plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer> {
    const { transformer } = this.first;
    if (header.length === 0) return transformer.toStorage(plaintext, dataCtx);
    if (isHeaderWriter(transformer)) return transformer.toStorageWithHeader(header, plaintext, dataCtx);
    return transformer.toStorage(plaintext, dataCtx).then((out) => Buffer.concat([header, out]));
  }

  private readError(errors: unknown[] | undefined, dataCtx: Uint8Array): Error {
    const storageKey = this.nameStorageKey ? storageKeyText(dataCtx) : undefined;
    if (errors === undefined) {
      return new TransformError(this.defaultErrorCode, this.defaultError, { storageKey });
    }
    const flat = flattenErrors(errors);
    const only = flat.length === 1 ? flat[0] : undefined;
    // Go's errors.Reduce: a single error passes through unchanged unless the key must be named.
    if (only !== undefined && storageKey === undefined) return only;
    const codes = new Set(flat.map((e) => codeOf(e, 'DECRYPT_FAILED')));
    const code = codes.size === 1 ? [...codes][0]! : 'DECRYPT_FAILED';
    return new TransformError(code, aggregateReason(flat), { storageKey, errors: flat, cause: only });
  }

  private writeError(err: unknown, dataCtx: Uint8Array): Error {
    return new TransformError(codeOf(err, 'ENCRYPT_FAILED'), reasonOf(err), {
      storageKey: storageKeyText(dataCtx),
      operation: 'write',
      cause: err,
    });
  }
}

function hasPrefix(data: Uint8Array, prefix: Uint8Array): boolean {
  if (data.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (data[i] !== prefix[i]) return false;
  return true;
}
