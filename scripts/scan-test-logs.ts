// Issue #8 §6: after `npm test` ran with ATREST_TEST_LOG_DIR set (scripts/test-all.sh), searches
// every captured log file (*.log: stderr of atrest child processes and JSON log lines of
// in-process servers; never STDOUT, where `decrypt`/`get-raw` legitimately print plaintext) for
// the secrets the tests used: the key secrets in test/fixtures/configs (base64 as written, and the
// decoded bytes as base64 and hex), the values in <dir>/secrets.txt (registered by the test helpers:
// aesgcm keys, DEKs and seeds the fake KMS saw, local-backend KEKs), and well-known test values.
// Prints hits as file:line and the secret's label, never the secret; exits 1 on any hit.
// Usage: node --import tsx scripts/scan-test-logs.ts <dir>
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const dir = process.argv[2] ?? process.env['ATREST_TEST_LOG_DIR'];
if (!dir) {
  console.error('usage: scan-test-logs.ts <ATREST_TEST_LOG_DIR>');
  process.exit(2);
}
const repo = new URL('..', import.meta.url).pathname;

/** Secret byte strings with a label; bytes of at least 6 (shorter ones would match by chance). */
const secrets = new Map<string, string>(); // base64 of bytes → label
const add = (bytes: Buffer, label: string): void => { if (bytes.length >= 6) secrets.set(bytes.toString('base64'), label); };

// Well-known values the kubectl and task-page tests store in Secrets.
for (const v of ['mydata', 'hunter2-plaintext']) add(Buffer.from(v), `test value`);

// Fixture configurations: `secret: <base64>`.
function walk(d: string): string[] {
  return readdirSync(d).flatMap((f) => { const p = join(d, f); return statSync(p).isDirectory() ? walk(p) : [p]; });
}
let fixtureSecrets = 0;
for (const f of walk(join(repo, 'test/fixtures/configs'))) {
  for (const m of readFileSync(f, 'utf8').matchAll(/secret:\s*["']?([A-Za-z0-9+/=]{16,})/g)) {
    const text = m[1]!;
    add(Buffer.from(text), `fixture secret in ${relative(repo, f)}`);
    add(Buffer.from(text, 'base64'), `fixture key in ${relative(repo, f)}`);
    fixtureSecrets++;
  }
}
// Registered by the helpers (test/helpers/test-log.ts): `<label> <base64>` lines.
let registered = 0;
try {
  for (const line of readFileSync(join(dir, 'secrets.txt'), 'utf8').split('\n')) {
    const [label, b64] = line.split(' ');
    if (label && b64) { add(Buffer.from(b64, 'base64'), label); registered++; }
  }
} catch { /* none registered */ }

// Needles: every printable form a secret could take in a log line.
const needles = new Map<string, string>(); // needle → "label (form)"
for (const [b64, label] of secrets) {
  const b = Buffer.from(b64, 'base64');
  const forms: Array<[string, string]> = [
    ['base64', b64], ['base64 unpadded', b64.replace(/=+$/, '')], ['base64url', b.toString('base64url')],
    ['hex', b.toString('hex')], ['HEX', b.toString('hex').toUpperCase()],
  ];
  const text = b.toString('utf8');
  if (/^[\x20-\x7e]+$/.test(text)) forms.push(['text', text]);
  // A secret inside longer bytes that were base64-encoded: the encoding of its middle depends on
  // where it starts modulo 3; the inner characters of each of the three alignments are fixed.
  for (const shift of [1, 2]) {
    const enc = Buffer.concat([Buffer.alloc(shift), b]).toString('base64').replace(/=+$/, '');
    forms.push([`base64 at offset ${shift}`, enc.slice(Math.ceil((shift * 4) / 3) + 1, -2)]);
  }
  forms.push(['base64 inside longer data', b64.replace(/=+$/, '').slice(0, -2)]);
  // How JSON loggers print bytes: a Buffer as [1,2,3] (pino: {"type":"Buffer","data":[...]}), a
  // Uint8Array as {"0":1,"1":2,...}.
  forms.push(['byte array', Array.from(b).join(',')]);
  forms.push(['byte object', Array.from(b.subarray(0, 16)).map((v, i) => `"${i}":${v}`).join(',')]);
  for (const [form, n] of forms) if (n.length >= 6) needles.set(n, `${label} (${form})`);
}
// Index by the first 6 characters so a scan is one Map lookup per position.
const index = new Map<string, string[]>();
for (const n of needles.keys()) { const k = n.slice(0, 6); (index.get(k) ?? index.set(k, []).get(k)!).push(n); }

let files = 0;
let lines = 0;
const hits: string[] = [];
for (const f of walk(dir).filter((p) => p.endsWith('.log'))) {
  files++;
  const content = readFileSync(f, 'utf8').split('\n');
  content.forEach((line, i) => {
    lines++;
    for (let p = 0; p + 6 <= line.length; p++) {
      const cands = index.get(line.slice(p, p + 6));
      if (!cands) continue;
      for (const n of cands) if (line.startsWith(n, p)) hits.push(`${relative(dir, f)}:${i + 1}: ${needles.get(n)}`);
    }
  });
}
console.log(`RELIABILITY ${JSON.stringify({ section: 'secrets-scan', logFiles: files, logLines: lines, secrets: secrets.size, fixtureSecrets, registered, needles: needles.size, hits: hits.length })}`);
for (const h of hits.slice(0, 200)) console.error(`secret found in a log: ${h}`);
process.exit(hits.length > 0 ? 1 : 0);
