// HPACK (RFC 7541) for the connection edge: a decoder that mirrors a client's encoder (static and
// dynamic table, dynamic table size updates, Huffman strings) and a stateless encoder that writes
// only static-table indices and literals "without indexing" / "never indexed". The encoder never
// adds to the receiver's dynamic table, so a rewritten block leaves nghttp2's table exactly as it
// was (empty), whatever the client's blocks did to ours. Names and values are latin1 strings: one
// char per octet, so any byte survives a decode/encode round trip.
import { PluginError } from '../errors.js';
import { huffmanDecode } from './huffman.js';

export interface HeaderField {
  name: string;
  value: string;
  /** Sent as "never indexed" (RFC 7541 §6.2.3): kept so on re-encoding. */
  neverIndex: boolean;
}

/** RFC 7541 Appendix A, index 1–61. */
const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''],
  ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''],
  ['if-modified-since', ''], ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''],
  ['last-modified', ''], ['link', ''], ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''],
  ['proxy-authorization', ''], ['range', ''], ['referer', ''], ['refresh', ''], ['retry-after', ''],
  ['server', ''], ['set-cookie', ''], ['strict-transport-security', ''], ['transfer-encoding', ''],
  ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
];

/** The static table, for tests. */
export const HPACK_STATIC_TABLE = STATIC_TABLE;

const STATIC_NAME_INDEX = new Map<string, number>();
const STATIC_PAIR_INDEX = new Map<string, number>();
for (const [i, [name, value]] of STATIC_TABLE.entries()) {
  if (!STATIC_NAME_INDEX.has(name)) STATIC_NAME_INDEX.set(name, i + 1);
  if (value !== '') STATIC_PAIR_INDEX.set(`${name}\0${value}`, i + 1);
}

/** Per-entry overhead of the table size and of the header list size (RFC 7541 §4.1, RFC 9113 §6.5.2). */
const ENTRY_OVERHEAD = 32;
/** Integers larger than this are refused: no legitimate length or index comes near it. */
const MAX_INTEGER = 2 ** 24;

function malformed(message: string): PluginError {
  return new PluginError('PLUGIN_HTTP2_MALFORMED', `HPACK: ${message}`);
}

export interface HpackDecoderOptions {
  /** SETTINGS_HEADER_TABLE_SIZE the receiver announced: the most a size update may ask for (default 4096). */
  maxTableSize?: number;
  /** Largest decoded header list (names + values + 32 per field) accepted (default 64 KiB). */
  maxHeaderListSize?: number;
}

/** The decoding context of one connection's client→server direction. */
export class HpackDecoder {
  private readonly maxTableSize: number;
  private readonly maxHeaderListSize: number;
  /** Newest entry first. */
  private readonly table: Array<readonly [string, string]> = [];
  private tableBytes = 0;
  private tableLimit: number;

  constructor(options: HpackDecoderOptions = {}) {
    this.maxTableSize = options.maxTableSize ?? 4096;
    this.maxHeaderListSize = options.maxHeaderListSize ?? 64 * 1024;
    this.tableLimit = this.maxTableSize;
  }

  /** Decodes one complete header block; throws PluginError PLUGIN_HTTP2_MALFORMED. */
  decode(block: Uint8Array): HeaderField[] {
    const fields: HeaderField[] = [];
    let listSize = 0;
    let pos = 0;
    const integer = (prefixBits: number): number => {
      const mask = (1 << prefixBits) - 1;
      let value = block[pos++]! & mask;
      if (value < mask) return value;
      let shift = 0;
      for (;;) {
        if (pos >= block.length) throw malformed('truncated integer');
        const b = block[pos++]!;
        if (shift > 21) throw malformed('integer too large');
        value += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if (value > MAX_INTEGER) throw malformed('integer too large');
        if ((b & 0x80) === 0) return value;
      }
    };
    const string = (): string => {
      if (pos >= block.length) throw malformed('truncated string');
      const huffman = (block[pos]! & 0x80) !== 0;
      const length = integer(7);
      if (pos + length > block.length) throw malformed('string longer than the block');
      const bytes = block.subarray(pos, pos + length);
      pos += length;
      return huffman ? huffmanDecode(bytes) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
    };
    const add = (name: string, value: string, neverIndex: boolean): void => {
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize > this.maxHeaderListSize) throw malformed(`header list larger than ${this.maxHeaderListSize} bytes`);
      fields.push({ name, value, neverIndex });
    };
    while (pos < block.length) {
      const first = block[pos]!;
      if (first & 0x80) {
        // Indexed field.
        const [name, value] = this.entry(integer(7));
        add(name, value, false);
      } else if (first & 0x40) {
        // Literal with incremental indexing.
        const index = integer(6);
        const name = index === 0 ? string() : this.entry(index)[0];
        const value = string();
        this.insert(name, value);
        add(name, value, false);
      } else if (first & 0x20) {
        // Dynamic table size update: only before the first field of a block.
        if (fields.length > 0) throw malformed('dynamic table size update after a header field');
        const size = integer(5);
        if (size > this.maxTableSize) throw malformed(`dynamic table size update to ${size}, above the ${this.maxTableSize} allowed`);
        this.tableLimit = size;
        this.evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const neverIndex = (first & 0x10) !== 0;
        const index = integer(4);
        const name = index === 0 ? string() : this.entry(index)[0];
        add(name, string(), neverIndex);
      }
    }
    return fields;
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw malformed('index 0');
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
    const entry = this.table[index - STATIC_TABLE.length - 1];
    if (!entry) throw malformed(`index ${index} is beyond the dynamic table`);
    return entry;
  }

  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    this.evict(size);
    // An entry larger than the whole table empties it and is not added (RFC 7541 §4.4).
    if (size > this.tableLimit) return;
    this.table.unshift([name, value]);
    this.tableBytes += size;
  }

  /** Drops the oldest entries until `room` more bytes fit. */
  private evict(room: number): void {
    while (this.table.length > 0 && this.tableBytes + room > this.tableLimit) {
      const [name, value] = this.table.pop()!;
      this.tableBytes -= name.length + value.length + ENTRY_OVERHEAD;
    }
  }
}

function integerBytes(out: number[], prefixBits: number, flags: number, value: number): void {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    out.push(flags | value);
    return;
  }
  out.push(flags | mask);
  let rest = value - mask;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

/**
 * Encodes fields with static-table indices and literals that never touch the receiver's dynamic
 * table (strings are sent raw, not Huffman-coded).
 */
export function encodeWithoutIndexing(fields: readonly HeaderField[]): Buffer {
  const head: number[] = [];
  const parts: Buffer[] = [];
  const flushHead = (): void => {
    if (head.length > 0) parts.push(Buffer.from(head));
    head.length = 0;
  };
  const literal = (text: string): void => {
    integerBytes(head, 7, 0x00, text.length);
    flushHead();
    parts.push(Buffer.from(text, 'latin1'));
  };
  for (const { name, value, neverIndex } of fields) {
    const pair = neverIndex ? undefined : STATIC_PAIR_INDEX.get(`${name}\0${value}`);
    if (pair !== undefined) {
      integerBytes(head, 7, 0x80, pair);
      continue;
    }
    const nameIndex = STATIC_NAME_INDEX.get(name) ?? 0;
    integerBytes(head, 4, neverIndex ? 0x10 : 0x00, nameIndex);
    if (nameIndex === 0) literal(name);
    literal(value);
  }
  flushHead();
  return Buffer.concat(parts);
}
