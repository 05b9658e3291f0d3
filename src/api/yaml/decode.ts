// YAML text → JSON text, within limits: nesting depth (checked while the parser builds its syntax
// tree, before anything recursive runs), alias count and alias expansion, duplicate keys (linear,
// where the yaml library's own check is quadratic). Pure; runs inside the decoder worker (worker.ts),
// whose stack, heap and time are bounded by decoder.ts.
import { Composer, isScalar, Lexer, LineCounter, Parser, visit, type Document, type YAMLError } from 'yaml';
import type { CST } from 'yaml';
import { shapeExceeds } from '../body-limits.js';

export interface YamlDecodeLimits {
  /** Deepest nesting of collections. */
  maxDepth: number;
  /** Alias nodes (`*name`) in the document (resolving each one scans the anchors: quadratic). */
  maxAliases: number;
  /** The decoded document as JSON text, in characters (bounds what aliases can expand to). */
  maxJsonChars: number;
}

export type YamlDecodeResult =
  | { ok: true; json: string }
  /** depth, aliases: a 400 naming the limit; large: a 413; syntax: a 400 with the parser's reason. */
  | { ok: false; kind: 'syntax' | 'depth' | 'aliases' | 'large'; reason: string };

/** The parser keeps one stack entry per open collection, plus the document and the scalar being read. */
const STACK_OVERHEAD = 2;

/** The first line of a parse error, with its position (never the excerpt of the body the library quotes). */
function syntaxReason(err: YAMLError, lines: LineCounter): string {
  const { line, col } = lines.linePos(err.pos[0]);
  return `${err.message.split('\n')[0] ?? ''} at line ${line}, column ${col}`;
}

function parseTokens(text: string, limits: YamlDecodeLimits, lines: LineCounter): CST.Token[] | YamlDecodeResult {
  const parser = new Parser(lines.addNewLine);
  lines.addNewLine(0);
  const tokens: CST.Token[] = [];
  for (const lexeme of new Lexer().lex(text)) {
    for (const token of parser.next(lexeme)) tokens.push(token);
    if (parser.stack.length > limits.maxDepth + STACK_OVERHEAD) {
      return { ok: false, kind: 'depth', reason: `exceeded max depth of ${limits.maxDepth}` };
    }
  }
  for (const token of parser.end()) tokens.push(token);
  return tokens;
}

/** Duplicate scalar keys ("Map keys must be unique", as the library says) and the number of aliases. */
function checkNodes(doc: Document.Parsed, limits: YamlDecodeLimits, lines: LineCounter): YamlDecodeResult | undefined {
  let aliases = 0;
  let failure: YamlDecodeResult | undefined;
  visit(doc, {
    Alias() {
      if (++aliases > limits.maxAliases) {
        failure = { ok: false, kind: 'aliases', reason: `document contains excessive aliasing: more than ${limits.maxAliases} aliases` };
        return visit.BREAK;
      }
      return undefined;
    },
    Map(_key, map) {
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        if (seen.has(pair.key.value)) {
          const offset = pair.key.range?.[0] ?? 0;
          const { line, col } = lines.linePos(offset);
          failure = { ok: false, kind: 'syntax', reason: `Map keys must be unique at line ${line}, column ${col}` };
          return visit.BREAK;
        }
        seen.add(pair.key.value);
      }
      return undefined;
    },
  });
  return failure;
}

export function decodeYamlText(text: string, limits: YamlDecodeLimits): YamlDecodeResult {
  const lines = new LineCounter();
  const tokens = parseTokens(text, limits, lines);
  if (!Array.isArray(tokens)) return tokens;
  // logLevel 'error': the library would otherwise print warnings quoting the body (which may hold
  // secret values) via process.emitWarning. uniqueKeys off: checkNodes does it in linear time.
  // maxAliasCount off: its estimate grows exponentially along a chain of anchors (11 anchors each
  // aliasing the one before, expanding to 2 values, count as more than 10,000). toJS does not
  // expand aliases (an alias is the anchor's very object); what they expand to is bounded below.
  const options = { logLevel: 'error' as const, uniqueKeys: false, maxAliasCount: -1 };
  const composer = new Composer(options);
  let doc: Document.Parsed | undefined;
  for (const d of composer.compose(tokens, true, text.length)) {
    if (doc !== undefined) return { ok: false, kind: 'syntax', reason: 'Source contains multiple documents; please use YAML.parseAllDocuments()' };
    doc = d;
  }
  if (doc === undefined) return { ok: true, json: 'null' };
  const error = doc.errors[0];
  if (error !== undefined) return { ok: false, kind: 'syntax', reason: syntaxReason(error, lines) };
  const failed = checkNodes(doc, limits, lines);
  if (failed) return failed;
  let value: unknown;
  try {
    value = doc.toJS(options);
  } catch (err) {
    // An alias before its anchor.
    if (err instanceof ReferenceError) return { ok: false, kind: 'syntax', reason: err.message.split('\n')[0] ?? '' };
    throw err;
  }
  // Aliases share subtrees: `&a [*a]` is a cycle and a chain of anchors can nest deeper than the text.
  // Every container costs at least 2 characters of JSON, which bounds the walk.
  const shape = shapeExceeds(value, limits.maxDepth, limits.maxJsonChars / 2);
  if (shape === 'deep') return { ok: false, kind: 'depth', reason: `exceeded max depth of ${limits.maxDepth}` };
  if (shape === 'large') return { ok: false, kind: 'large', reason: `the document expands to more than ${limits.maxJsonChars} characters of JSON` };
  const json = JSON.stringify(value) ?? 'null';
  if (json.length > limits.maxJsonChars) return { ok: false, kind: 'large', reason: `the document expands to more than ${limits.maxJsonChars} characters of JSON` };
  return { ok: true, json };
}
