// `Warning` response headers as kube-apiserver writes them (filters/warning.go): duplicates dropped;
// at most 4096 characters of warning text in all, past which every warning is cut to 256 characters
// and later ones are dropped. A body with 100,000 unknown fields gets a header kubectl can still read.
const TRUNCATE_AT_TOTAL = 4 * 1024;
const TRUNCATE_ITEM = 256;

const runes = (s: string): string[] => Array.from(s);

/** The warning texts to send, in kube's order and truncation. */
export function limitWarnings(texts: readonly string[]): string[] {
  const seen = new Set<string>();
  const ordered: string[] = [];
  let out: string[] = [];
  let written = 0;
  let truncating = false;
  const cut = (text: string): string => {
    const r = runes(text);
    return r.length > TRUNCATE_ITEM ? r.slice(0, TRUNCATE_ITEM).join('') : text;
  };
  for (const original of texts) {
    if (original === '') continue;
    if (truncating && written >= TRUNCATE_AT_TOTAL) break;
    if (seen.has(original)) continue;
    seen.add(original);
    ordered.push(original);
    const text = truncating ? cut(original) : original;
    const length = runes(text).length;
    if (truncating || written + length <= TRUNCATE_AT_TOTAL) {
      written += length;
      out.push(text);
      continue;
    }
    // Over the limit: start again with every warning so far cut short.
    truncating = true;
    out = ordered.map(cut);
    written = out.reduce((n, t) => n + runes(t).length, 0);
  }
  return out;
}

/**
 * `299 - "<text>"` as kube writes it: the text's UTF-8 bytes as they are (node writes header strings
 * as latin1, so each byte becomes one char); bytes node refuses in a header (DEL; controls are
 * already escaped by JSON.stringify) become `?`. Found by test/reliability/fuzz-http.test.ts: an
 * unknown field named with a non-latin1 character made writeHead throw and the request hang.
 */
export function warningHeader(text: string): string {
  const latin1 = Buffer.from(JSON.stringify(text), 'utf8').toString('latin1');
  return `299 - ${latin1.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?')}`;
}

/** The `Warning` header values for a reply. */
export function warningHeaders(texts: readonly string[]): string[] {
  return limitWarnings(texts).map(warningHeader);
}
