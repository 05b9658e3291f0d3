// The HPACK Huffman code (RFC 7541 §5.2, Appendix B). The code is canonical: sorted by length,
// then by symbol, each code is the previous one plus one (shifted left when the length grows), so
// the 257 code lengths below are the whole table and the codes are rebuilt from them at load.
// (test/plugin/http2-edge-codec.test.ts checks the result against header blocks Node's own HTTP/2
// encoder, nghttp2, writes.)
import { PluginError } from '../errors.js';

/** Bit length of the code of each symbol 0–255, then EOS (256). */
const CODE_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 0x20  ' ' … '/'
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 0x30  '0' … '?'
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 0x40  '@' … 'O'
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 0x50  'P' … '_'
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 0x60  '`' … 'o'
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 0x70  'p' … 0x7f
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
  30, // EOS
];

const EOS = 256;
const MAX_LENGTH = 30;

/** codes[s]: the code of symbol s (its low CODE_LENGTHS[s] bits). */
const codes = new Uint32Array(257);
/** For each length L: the first code of that length, how many codes have it, where they start in `symbols`. */
const firstCode = new Int32Array(MAX_LENGTH + 1);
const countOf = new Int32Array(MAX_LENGTH + 1);
const offsetOf = new Int32Array(MAX_LENGTH + 1);
/** Symbols sorted by (length, symbol): the canonical order. */
const symbols = new Uint16Array(257);

{
  const order = Array.from({ length: 257 }, (_, s) => s).sort((a, b) => CODE_LENGTHS[a]! - CODE_LENGTHS[b]! || a - b);
  let code = 0;
  let length = CODE_LENGTHS[order[0]!]!;
  for (const [i, s] of order.entries()) {
    const len = CODE_LENGTHS[s]!;
    if (i > 0) code = (code + 1) * 2 ** (len - length);
    if (countOf[len] === 0) {
      firstCode[len] = code;
      offsetOf[len] = i;
    }
    countOf[len]!++;
    length = len;
    codes[s] = code;
    symbols[i] = s;
  }
}

function malformed(message: string): PluginError {
  return new PluginError('PLUGIN_HTTP2_MALFORMED', `HPACK: ${message}`);
}

/** Decodes a Huffman-coded string literal into latin1 text (one char per octet). */
export function huffmanDecode(input: Uint8Array): string {
  // The shortest code has 5 bits: at most 8/5 symbols per input octet.
  const out = Buffer.allocUnsafe(Math.ceil((input.length * 8) / 5));
  let n = 0;
  let code = 0;
  let length = 0;
  for (const byte of input) {
    for (let bit = 7; bit >= 0; bit--) {
      code = code * 2 + ((byte >> bit) & 1);
      length++;
      const index = code - firstCode[length]!;
      if (index >= 0 && index < countOf[length]!) {
        const symbol = symbols[offsetOf[length]! + index]!;
        if (symbol === EOS) throw malformed('EOS symbol inside a Huffman-coded string');
        out[n++] = symbol;
        code = 0;
        length = 0;
      } else if (length === MAX_LENGTH) {
        throw malformed('invalid Huffman code');
      }
    }
  }
  // What is left must be padding: fewer than 8 bits, all ones (the most significant bits of EOS).
  if (length > 7 || code !== 2 ** length - 1) throw malformed('invalid Huffman padding');
  return out.toString('latin1', 0, n);
}

/** Huffman-codes latin1 text (one octet per char); the last byte is padded with ones. */
export function huffmanEncode(text: string): Buffer {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < text.length; i++) {
    const s = text.charCodeAt(i) & 0xff;
    let len = CODE_LENGTHS[s]!;
    const code = codes[s]!;
    // Feed the code in pieces of at most 8 bits so `acc` stays a small integer.
    while (len > 0) {
      const take = Math.min(len, 8 - bits);
      len -= take;
      acc = (acc << take) | ((code >>> len) & ((1 << take) - 1));
      bits += take;
      if (bits === 8) {
        out.push(acc);
        acc = 0;
        bits = 0;
      }
    }
  }
  if (bits > 0) out.push((acc << (8 - bits)) | ((1 << (8 - bits)) - 1));
  return Buffer.from(out);
}

/** Length in octets of the Huffman coding of `text`. */
export function huffmanLength(text: string): number {
  let bits = 0;
  for (let i = 0; i < text.length; i++) bits += CODE_LENGTHS[text.charCodeAt(i) & 0xff]!;
  return Math.ceil(bits / 8);
}
