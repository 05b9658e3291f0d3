// Small ports of Go formatting rules that kube-apiserver's config error texts depend on:
// strconv.Quote (`%q`), the byte order Go sorts map keys in, and encoding/json number text.
// Kept apart so the decoder and the validator render values exactly the same way.

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

/** Go's strconv.Quote: `"..."` with Go escapes; printable Unicode is kept as is. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    let cp = ch.codePointAt(0) ?? 0xfffd;
    // A lone UTF-16 surrogate cannot come out of Go's UTF-8 decoding; Go would hold U+FFFD.
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    const c = String.fromCodePoint(cp);
    switch (cp) {
      case 0x22: out += '\\"'; continue;
      case 0x5c: out += '\\\\'; continue;
      case 0x07: out += '\\a'; continue;
      case 0x08: out += '\\b'; continue;
      case 0x0c: out += '\\f'; continue;
      case 0x0a: out += '\\n'; continue;
      case 0x0d: out += '\\r'; continue;
      case 0x09: out += '\\t'; continue;
      case 0x0b: out += '\\v'; continue;
    }
    if (cp === 0x20 || (cp >= 0x21 && cp < 0x7f) || (cp >= 0x80 && PRINTABLE.test(c))) {
      out += c;
    } else if (cp < 0x20 || cp === 0x7f) {
      out += '\\x' + hex(cp, 2);
    } else if (cp < 0x10000) {
      out += '\\u' + hex(cp, 4);
    } else {
      out += '\\U' + hex(cp, 8);
    }
  }
  return out + '"';
}

/** Go's `%#v` of a []string, e.g. `[]string{"secrets", "*."}`. */
export function goStringSlice(items: readonly string[]): string {
  return `[]string{${items.map(goQuote).join(', ')}}`;
}

/** Compares strings by their UTF-8 bytes, the order Go's encoding/json writes map keys in. */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The text Go's encoding/json writes for a float64 (what sigs.k8s.io/yaml produces for a YAML
 * number): integers plainly, otherwise the shortest round-trip form with `e+21` style exponents.
 * JavaScript's Number#toString has the same shortest-digits rule and the same exponent cut-offs.
 */
export function goJsonNumber(n: number): string {
  return String(n);
}

/** Go's `%v` of a []int, e.g. `[16 24 32]`. */
export function goIntSlice(items: readonly number[]): string {
  return `[${items.join(' ')}]`;
}
