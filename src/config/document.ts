// From file text to a neutral value tree, the way kube-apiserver's decoder sees it:
// - text whose first non-space character is `{` is JSON (k8s' recognizer); everything else is
//   YAML, converted to JSON first (sigs.k8s.io/yaml on go-yaml v2, i.e. YAML 1.1 scalars:
//   yes/no/on/off are booleans, 0777 is octal; only the first document counts).
// - YAML map keys come out in Go's sorted order (YAML→JSON goes through a Go map), JSON keys in
//   file order with duplicates kept, so later stages report errors in kube's order.
// - YAML duplicate keys are strict errors with Go's text `line N: key "k" already set in map`;
//   the value that counts is the last one (non-strict YAML→JSON), as in Go.
// Error texts never quote file content beyond single characters, key names and line numbers, so
// a key secret cannot leak through a syntax error.
import { LineCounter, isAlias, isMap, isPair, isScalar, isSeq, parseAllDocuments } from 'yaml';
import type { Node as YamlNode, Tags } from 'yaml';
import { compareUtf8, goJsonNumber, goQuote } from './go-format.js';

export type DocNode =
  | { t: 'null' }
  | { t: 'bool'; v: boolean }
  /** `text` is the JSON number literal Go's decoder sees (for `number 1.5` error texts). */
  | { t: 'num'; text: string; v: number }
  | { t: 'str'; v: string }
  | { t: 'arr'; items: DocNode[] }
  | { t: 'obj'; entries: Array<[string, DocNode]> };

export interface ParsedDocument {
  format: 'yaml' | 'json';
  root: DocNode;
  /** YAML only: the duplicate-key strict error (already in Go's text), if any. */
  yamlStrictError?: string;
}

/** A document that cannot be turned into JSON at all; `message` is the Go-style cause. */
export class DocumentSyntaxError extends Error {}

const GO_SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*/;

/** File bytes → document tree. YAML must be valid UTF-8 without control characters (go-yaml's
 * reader checks); Go's JSON decoder is lenient about bytes. */
export function parseDocumentBytes(bytes: Uint8Array): ParsedDocument {
  const text = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(bytes);
  const lead = GO_SPACE.exec(text)?.[0].length ?? 0;
  if (text[lead] === '{') {
    try {
      return { format: 'json', root: parseJson(text) };
    } catch (err) {
      // kube meets JSON syntax errors first while looking for apiVersion/kind
      if (err instanceof DocumentSyntaxError) {
        throw new DocumentSyntaxError(`couldn't get version/kind; json parse error: ${err.message}`);
      }
      throw err;
    }
  }
  const problem = yamlReaderProblem(bytes);
  if (problem !== undefined) throw new DocumentSyntaxError(`yaml: ${problem}`);
  try {
    return parseYaml(text);
  } catch (err) {
    if (err instanceof RangeError) throw new DocumentSyntaxError(`yaml: exceeded max depth of ${MAX_DEPTH}`);
    throw err;
  }
}

/** libyaml's reader checks (yaml_parser_update_buffer): UTF-8 well-formedness, printable chars. */
function yamlReaderProblem(b: Uint8Array): string | undefined {
  let i = b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf ? 3 : 0;
  while (i < b.length) {
    const octet = b[i] as number;
    const width = (octet & 0x80) === 0 ? 1 : (octet & 0xe0) === 0xc0 ? 2 : (octet & 0xf0) === 0xe0 ? 3 : (octet & 0xf8) === 0xf0 ? 4 : 0;
    if (width === 0) return 'invalid leading UTF-8 octet';
    if (i + width > b.length) return 'incomplete UTF-8 octet sequence';
    let value = width === 1 ? octet & 0x7f : width === 2 ? octet & 0x1f : width === 3 ? octet & 0x0f : octet & 0x07;
    for (let k = 1; k < width; k++) {
      const next = b[i + k] as number;
      if ((next & 0xc0) !== 0x80) return 'invalid trailing UTF-8 octet';
      value = (value << 6) + (next & 0x3f);
    }
    if (!(width === 1 || (width === 2 && value >= 0x80) || (width === 3 && value >= 0x800) || (width === 4 && value >= 0x10000))) {
      return 'invalid length of a UTF-8 sequence';
    }
    if ((value >= 0xd800 && value <= 0xdfff) || value > 0x10ffff) return 'invalid Unicode character';
    const printable =
      value === 0x09 || value === 0x0a || value === 0x0d || (value >= 0x20 && value <= 0x7e) || value === 0x85 ||
      (value >= 0xa0 && value <= 0xd7ff) || (value >= 0xe000 && value <= 0xfffd) || value >= 0x10000;
    if (!printable) return 'control characters are not allowed';
    i += width;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// JSON, with Go encoding/json's syntax error texts

function quoteChar(c: string): string {
  if (c === "'") return "'\\''";
  if (c === '"') return `'"'`;
  const q = goQuote(c);
  return "'" + q.slice(1, -1) + "'";
}

/** Go's JSON scanner refuses nesting deeper than this (`exceeded max depth`). */
const MAX_DEPTH = 10000;

class JsonParser {
  private i = 0;
  private depth = 0;
  constructor(private readonly s: string) {}

  private enter(): void {
    if (++this.depth > MAX_DEPTH) throw new DocumentSyntaxError('exceeded max depth');
  }

  private fail(context: string): never {
    if (this.i >= this.s.length) throw new DocumentSyntaxError('unexpected end of JSON input');
    const c = String.fromCodePoint(this.s.codePointAt(this.i) ?? 0xfffd);
    throw new DocumentSyntaxError(`invalid character ${quoteChar(c)} ${context}`);
  }

  private ws(): void {
    while (this.i < this.s.length) {
      const c = this.s[this.i];
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r') this.i++;
      else break;
    }
  }

  parseTop(): DocNode {
    this.ws();
    const v = this.value('looking for beginning of value');
    this.ws();
    if (this.i < this.s.length) this.fail('after top-level value');
    return v;
  }

  private value(context: string): DocNode {
    const c = this.s[this.i];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return { t: 'str', v: this.string() };
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
    if (c === 't') return this.literal('true', { t: 'bool', v: true });
    if (c === 'f') return this.literal('false', { t: 'bool', v: false });
    if (c === 'n') return this.literal('null', { t: 'null' });
    return this.fail(context);
  }

  private literal(word: string, node: DocNode): DocNode {
    for (let k = 0; k < word.length; k++) {
      if (this.s[this.i] !== word[k]) this.fail(`in literal ${word} (expecting ${quoteChar(word[k] as string)})`);
      this.i++;
    }
    return node;
  }

  private object(): DocNode {
    this.i++; // {
    this.enter();
    const entries: Array<[string, DocNode]> = [];
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      this.depth--;
      return { t: 'obj', entries };
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail('looking for beginning of object key string');
      const key = this.string();
      this.ws();
      if (this.s[this.i] !== ':') this.fail('after object key');
      this.i++;
      this.ws();
      entries.push([key, this.value('looking for beginning of value')]);
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        continue;
      }
      if (c === '}') {
        this.i++;
        this.depth--;
        return { t: 'obj', entries };
      }
      this.fail('after object key:value pair');
    }
  }

  private array(): DocNode {
    this.i++; // [
    this.enter();
    const items: DocNode[] = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      this.depth--;
      return { t: 'arr', items };
    }
    for (;;) {
      this.ws();
      items.push(this.value('looking for beginning of value'));
      this.ws();
      const c = this.s[this.i];
      if (c === ',') {
        this.i++;
        continue;
      }
      if (c === ']') {
        this.i++;
        this.depth--;
        return { t: 'arr', items };
      }
      this.fail('after array element');
    }
  }

  private string(): string {
    this.i++; // opening quote
    let out = '';
    for (;;) {
      if (this.i >= this.s.length) this.fail('');
      const c = this.s[this.i] as string;
      if (c === '"') {
        this.i++;
        return out;
      }
      if (c.charCodeAt(0) < 0x20) this.fail('in string literal');
      if (c !== '\\') {
        out += c;
        this.i++;
        continue;
      }
      this.i++;
      const e = this.s[this.i];
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e !== undefined && e in simple) {
        out += simple[e];
        this.i++;
        continue;
      }
      if (e !== 'u') this.fail('in string escape code');
      this.i++;
      let code = 0;
      for (let k = 0; k < 4; k++) {
        const h = this.s[this.i];
        if (h === undefined || !/^[0-9a-fA-F]$/.test(h)) this.fail('in \\u hexadecimal character escape');
        code = code * 16 + parseInt(h as string, 16);
        this.i++;
      }
      out += String.fromCharCode(code);
    }
  }

  private number(): DocNode {
    const start = this.i;
    const digit = (): boolean => {
      const c = this.s[this.i];
      return c !== undefined && c >= '0' && c <= '9';
    };
    if (this.s[this.i] === '-') {
      this.i++;
      if (!digit()) this.fail('in numeric literal');
    }
    if (this.s[this.i] === '0') this.i++;
    else while (digit()) this.i++;
    if (this.s[this.i] === '.') {
      this.i++;
      if (!digit()) this.fail('after decimal point in numeric literal');
      while (digit()) this.i++;
    }
    if (this.s[this.i] === 'e' || this.s[this.i] === 'E') {
      this.i++;
      if (this.s[this.i] === '+' || this.s[this.i] === '-') this.i++;
      if (!digit()) this.fail('in exponent of numeric literal');
      while (digit()) this.i++;
    }
    const text = this.s.slice(start, this.i);
    return { t: 'num', text, v: Number(text) };
  }
}

function parseJson(text: string): DocNode {
  try {
    return new JsonParser(text).parseTop();
  } catch (err) {
    // Nesting too deep for our recursion (Go allows 10000 levels): fail the same way as beyond.
    if (err instanceof RangeError) throw new DocumentSyntaxError('exceeded max depth');
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// YAML (go-yaml v2 flavour)

/** The libyaml texts below that come from its parser (not its scanner). */
const PARSER_PROBLEMS = new Set([
  "did not find expected '-' indicator",
  'did not find expected key',
  'did not find expected node content',
  "did not find expected ',' or ']'",
  "did not find expected ',' or '}'",
]);

/** libyaml-style texts for the yaml package's error codes; never the package's own message,
 * which may quote file content. */
function yamlProblem(code: string, message: string): string {
  switch (code) {
    case 'BAD_INDENT':
      if (message.includes('sequence items')) return "did not find expected '-' indicator";
      if (message.includes('mapping items')) return 'did not find expected key';
      if (message.startsWith('Flow sequence')) return "did not find expected ',' or ']'";
      if (message.startsWith('Flow map')) return "did not find expected ',' or '}'";
      return 'found a bad indentation';
    case 'MISSING_CHAR':
      if (message.startsWith('Missing closing')) return 'found unexpected end of stream';
      if (message.startsWith('Flow map')) return "did not find expected ',' or '}'";
      if (message.startsWith('Flow sequence')) return "did not find expected ',' or ']'";
      return "could not find expected ':'";
    case 'BLOCK_AS_IMPLICIT_KEY':
      return 'mapping values are not allowed in this context';
    case 'MULTILINE_IMPLICIT_KEY':
    case 'KEY_OVER_1024_CHARS':
      return "could not find expected ':'";
    case 'BAD_DQ_ESCAPE':
      return 'found unknown escape character';
    case 'TAB_AS_INDENT':
    case 'BAD_SCALAR_START':
      return 'found character that cannot start any token';
    case 'BAD_ALIAS':
      return 'unknown anchor referenced';
    case 'BAD_DIRECTIVE':
      return 'found unknown directive name';
    case 'MULTIPLE_ANCHORS':
    case 'MULTIPLE_TAGS':
    case 'BAD_PROP_ORDER':
    case 'ALIAS_PROPS':
      return 'did not find expected node content';
    case 'BLOCK_IN_FLOW':
      return 'block collections are not allowed in flow context';
    case 'TAG_RESOLVE_FAILED':
      return 'cannot decode tagged value';
    case 'UNEXPECTED_TOKEN':
      if (message.includes('block-seq-ind')) return 'block sequence entries are not allowed in this context';
      return 'did not find expected key';
    default:
      return 'did not find expected key';
  }
}

/** The YAML 1.1 tags go-yaml v2 resolves plain scalars with: no base-60 numbers, and
 * timestamps stay strings (go-yaml keeps them as strings when decoding into interface{}). */
function goYamlTags(tags: Tags): Tags {
  return tags.filter((t) => {
    const tag = (t as { tag?: string }).tag;
    const format = (t as { format?: string }).format;
    if (tag === 'tag:yaml.org,2002:timestamp') return false;
    if (format === 'TIME') return false;
    return true;
  });
}

const MAX_ALIASES = 100;

function parseYaml(text: string): ParsedDocument {
  const source = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const lineCounter = new LineCounter();
  const opts = {
    version: '1.1' as const,
    // exact integer text for int32 overflow messages (`number 9999999999999999999`)
    intAsBigInt: true,
    uniqueKeys: false,
    prettyErrors: false,
    lineCounter,
    customTags: goYamlTags,
  };
  const docs = parseAllDocuments(source, opts);
  const doc = Array.isArray(docs) ? docs[0] : undefined;
  if (doc === undefined) return { format: 'yaml', root: { t: 'null' } };
  const first = doc.errors[0];
  if (first !== undefined) {
    const problem = yamlProblem(first.code, first.message);
    // go-yaml v2 prints libyaml's 0-based line for PARSER errors and the 1-based line for
    // scanner errors (decode.go `fail`), so kube reports e.g. `line 10` for a problem on line 11.
    let line = lineCounter.linePos(first.pos[0]).line;
    if (PARSER_PROBLEMS.has(problem)) line -= 1;
    throw new DocumentSyntaxError(line > 0 ? `yaml: line ${line}: ${problem}` : `yaml: ${problem}`);
  }

  // go-yaml v2 (libyaml) only takes YAML 1.1 documents
  if (doc.directives?.yaml.explicit === true && doc.directives.yaml.version !== '1.1') {
    throw new DocumentSyntaxError('yaml: found incompatible YAML document');
  }

  const duplicates: string[] = [];
  collectDuplicateKeys(doc.contents, lineCounter, duplicates, 0);

  let js: unknown;
  try {
    js = doc.toJS({ mapAsMap: true, maxAliasCount: MAX_ALIASES });
  } catch (err) {
    const msg = err instanceof Error ? err.message : '';
    if (/alias count/i.test(msg)) throw new DocumentSyntaxError('yaml: document contains excessive aliasing');
    throw new DocumentSyntaxError('yaml: unknown anchor referenced');
  }
  const root = fromYamlValue(js, new Set(), 0);
  const parsed: ParsedDocument = { format: 'yaml', root };
  if (duplicates.length > 0) parsed.yamlStrictError = `yaml: unmarshal errors: ${duplicates.join('; ')}`;
  return parsed;
}

/** go-yaml's `%#v` of a decoded map key: strings quoted, numbers and booleans bare. */
function goKeyRepr(key: YamlNode | null): string | undefined {
  if (key === null) return 'interface {}(nil)';
  if (!isScalar(key)) return undefined;
  const v = key.value;
  if (typeof v === 'symbol') return undefined; // merge key `<<`
  if (typeof v === 'string') return goQuote(v);
  if (v === null || v === undefined) return 'interface {}(nil)';
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return undefined;
}

/** Strict go-yaml: `line N: key "k" already set in map`, in go-yaml's order (a value's own
 * duplicates before the duplicate of its key). Aliases are not followed. */
function collectDuplicateKeys(node: unknown, lc: LineCounter, out: string[], depth: number): void {
  if (depth > MAX_DEPTH) throw new DocumentSyntaxError(`yaml: exceeded max depth of ${MAX_DEPTH}`);
  if (isMap(node)) {
    const seen = new Set<string>();
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      collectDuplicateKeys(pair.value, lc, out, depth + 1);
      const key = pair.key as YamlNode | null;
      const repr = goKeyRepr(key);
      if (repr === undefined) continue;
      const identity = isScalar(key) ? `${typeof key.value}:${String(key.value)}` : 'null';
      if (seen.has(identity)) {
        const at = (pair.value as YamlNode | null)?.range?.[0] ?? key?.range?.[0] ?? 0;
        out.push(`line ${lc.linePos(at).line}: key ${repr} already set in map`);
      } else {
        seen.add(identity);
      }
    }
  } else if (isSeq(node)) {
    for (const item of node.items) collectDuplicateKeys(item, lc, out, depth + 1);
  } else if (isAlias(node)) {
    return;
  }
}

/** sigs.k8s.io/yaml's key conversion: non-string keys become their Go text. */
function keyText(k: unknown): string {
  if (typeof k === 'string') return k;
  if (k === null || k === undefined) return 'null';
  if (typeof k === 'number') return goJsonNumber(k);
  if (typeof k === 'bigint') return k.toString();
  return String(k);
}

/** JS value (from the yaml package) → DocNode; `open` holds the collections being converted,
 * to refuse self-referencing anchors as go-yaml does. */
function fromYamlValue(v: unknown, open: Set<object>, depth: number): DocNode {
  if (depth > MAX_DEPTH) throw new DocumentSyntaxError(`yaml: exceeded max depth of ${MAX_DEPTH}`);
  if (typeof v === 'object' && v !== null) {
    if (open.has(v)) throw new DocumentSyntaxError('yaml: anchor value contains itself');
    open.add(v);
    try {
      return fromYamlObject(v, open, depth);
    } finally {
      open.delete(v);
    }
  }
  if (v === null || v === undefined) return { t: 'null' };
  if (typeof v === 'string') return { t: 'str', v };
  if (typeof v === 'boolean') return { t: 'bool', v };
  if (typeof v === 'number') {
    // Go's json.Marshal refuses these (sigs.k8s.io/yaml then fails the whole conversion).
    if (Number.isNaN(v)) throw new DocumentSyntaxError('json: unsupported value: NaN');
    if (!Number.isFinite(v)) throw new DocumentSyntaxError(`json: unsupported value: ${v > 0 ? '+Inf' : '-Inf'}`);
    return { t: 'num', text: goJsonNumber(v), v };
  }
  if (typeof v === 'bigint') {
    // go-yaml keeps integers that fit int64/uint64; larger ones become float64
    if (v >= -(2n ** 63n) && v <= 2n ** 64n - 1n) return { t: 'num', text: v.toString(), v: Number(v) };
    return fromYamlValue(Number(v), open, depth);
  }
  return { t: 'null' };
}

function fromYamlObject(v: object, open: Set<object>, depth: number): DocNode {
  if (v instanceof Uint8Array) return { t: 'str', v: Buffer.from(v).toString('utf8') };
  if (Array.isArray(v)) return { t: 'arr', items: v.map((item) => fromYamlValue(item, open, depth + 1)) };
  if (v instanceof Date) return { t: 'str', v: v.toISOString() };
  let pairs: Iterable<[unknown, unknown]>;
  if (v instanceof Set) pairs = [...v].map((k): [unknown, unknown] => [k, null]);
  else if (v instanceof Map) pairs = v.entries();
  else pairs = Object.entries(v);
  const byKey = new Map<string, DocNode>();
  for (const [k, val] of pairs) byKey.set(keyText(k), fromYamlValue(val, open, depth + 1));
  const entries = [...byKey.entries()].sort((a, b) => compareUtf8(a[0], b[0]));
  return { t: 'obj', entries };
}

