// The Go behaviours the config texts depend on: strconv.Quote, time.ParseDuration and
// Duration.String, net/url.Parse failures, base64.StdEncoding. Expected values are Go's
// documented/observed outputs (e.g. kube's TestKMSEndpoint expectation for a control character).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { goQuote, goStringSlice, compareUtf8 } from '../../src/config/go-format.js';
import { formatGoDuration, parseGoDuration } from '../../src/config/go-duration.js';
import { parseGoUrl } from '../../src/config/go-url.js';
import { decodeKeySecret } from '../../src/config/secret.js';

test('goQuote follows strconv.Quote', () => {
  assert.equal(goQuote('secrets'), '"secrets"');
  assert.equal(goQuote('a"b\\c'), '"a\\"b\\\\c"');
  assert.equal(goQuote('unix:///foo\n.socket'), '"unix:///foo\\n.socket"');
  assert.equal(goQuote('\t\r\x07\x08\x0c\x0b'), '"\\t\\r\\a\\b\\f\\v"');
  assert.equal(goQuote('\x00\x1f\x7f'), '"\\x00\\x1f\\x7f"');
  assert.equal(goQuote('caf\u00e9 \u4e16'), '"caf\u00e9 \u4e16"');
  assert.equal(goQuote('\u00a0\u200b'), '"\\u00a0\\u200b"');
  assert.equal(goQuote('\u{1F600}'), '"\u{1F600}"');
  assert.equal(goQuote('\u{E0001}'), '"\\U000e0001"');
  assert.equal(goQuote('\ud800'), '"\ufffd"');
  assert.equal(goStringSlice(['secrets', '*.']), '[]string{"secrets", "*."}');
});

test('compareUtf8 orders like Go byte-wise string comparison', () => {
  const keys = ['resources', 'Resources', 'apiVersion', 'kind', '\u{1F600}', '\uffff'];
  keys.sort(compareUtf8);
  assert.deepEqual(keys, ['Resources', 'apiVersion', 'kind', 'resources', '\uffff', '\u{1F600}']);
});

test('parseGoDuration accepts what time.ParseDuration accepts', () => {
  const cases: Array<[string, bigint]> = [
    ['3s', 3_000_000_000n],
    ['500ms', 500_000_000n],
    ['1m30s', 90_000_000_000n],
    ['1.5h', 5_400_000_000_000n],
    ['-1m', -60_000_000_000n],
    ['+10s', 10_000_000_000n],
    ['0', 0n],
    ['-0', 0n],
    ['0s', 0n],
    ['1h2m3s4ms5us6ns', 3_723_004_005_006n],
    ['1\u00b5s', 1000n],
    ['1\u03bcs', 1000n],
    ['.5s', 500_000_000n],
    ['5.s', 5_000_000_000n],
    ['2562047h47m16.854775807s', 9_223_372_036_854_775_807n],
    ['-2562047h47m16.854775808s', -9_223_372_036_854_775_808n],
    ['1.0000000000000000000000001s', 1_000_000_000n],
  ];
  for (const [text, ns] of cases) assert.equal(parseGoDuration(text), ns, text);
});

test('parseGoDuration fails with time.ParseDuration texts', () => {
  const cases: Array<[string, string]> = [
    ['', 'time: invalid duration ""'],
    ['abc', 'time: invalid duration "abc"'],
    ['3', 'time: missing unit in duration "3"'],
    ['3 seconds', 'time: unknown unit " seconds" in duration "3 seconds"'],
    ['3x', 'time: unknown unit "x" in duration "3x"'],
    ['.s', 'time: invalid duration ".s"'],
    ['-', 'time: invalid duration "-"'],
    ['2562047h47m16.854775808s', 'time: invalid duration "2562047h47m16.854775808s"'],
    ['9223372036854775808ns', 'time: invalid duration "9223372036854775808ns"'],
    ['3\u00e9', 'time: unknown unit "\\xc3\\xa9" in duration "3\\xc3\\xa9"'],
  ];
  for (const [text, msg] of cases) assert.throws(() => parseGoDuration(text), { message: msg }, text);
});

test('formatGoDuration matches Duration.String', () => {
  const cases: Array<[bigint, string]> = [
    [0n, '0s'],
    [1n, '1ns'],
    [1_100n, '1.1\u00b5s'],
    [2_200_000n, '2.2ms'],
    [500_000_000n, '500ms'],
    [3_000_000_000n, '3s'],
    [90_000_000_000n, '1m30s'],
    [-60_000_000_000n, '-1m0s'],
    [3_723_004_005_006n, '1h2m3.004005006s'],
    [-9_223_372_036_854_775_808n, '-2562047h47m16.854775808s'],
  ];
  for (const [ns, text] of cases) assert.equal(formatGoDuration(ns), text, text);
});

test('parseGoUrl: schemes and the failures of url.Parse', () => {
  const ok: Array<[string, string]> = [
    ['unix:///var/run/kms.sock', 'unix'],
    ['UNIX:///x', 'unix'],
    ['unix:///@kms-provider.sock', 'unix'],
    ['unix://host/x', 'unix'],
    ['unix:relative.sock', 'unix'],
    ['https://www.foo.com', 'https'],
    ['/just/a/path', ''],
    ['unix:///a%20b', 'unix'],
    ['unix:///x?q=1#frag', 'unix'],
  ];
  for (const [raw, scheme] of ok) assert.deepEqual(parseGoUrl(raw), { ok: true, scheme }, raw);
  const bad: Array<[string, string]> = [
    ['unix:///foo\n.socket', 'parse "unix:///foo\\n.socket": net/url: invalid control character in URL'],
    [':foo', 'parse ":foo": missing protocol scheme'],
    ['1a:b/c', 'parse "1a:b/c": first path segment in URL cannot contain colon'],
    ['unix://host:port/x', 'parse "unix://host:port/x": invalid port ":port" after host'],
    ['unix://[::1/x', `parse "unix://[::1/x": missing ']' in host`],
    ['unix://ho st/x', 'parse "unix://ho st/x": invalid character " " in host name'],
    ['unix:///a%zz', 'parse "unix:///a%zz": invalid URL escape "%zz"'],
    ['unix:///a%2', 'parse "unix:///a%2": invalid URL escape "%2"'],
    ['unix://us{r@host/x', 'parse "unix://us{r@host/x": net/url: invalid userinfo'],
    ['unix:///x#%zz', 'parse "unix:///x#%zz": invalid URL escape "%zz"'],
  ];
  for (const [raw, error] of bad) assert.deepEqual(parseGoUrl(raw), { ok: false, error }, raw);
});

test('decodeKeySecret follows base64.StdEncoding', () => {
  assert.deepEqual(decodeKeySecret('c2VjcmV0IGlzIHNlY3VyZQ=='), Buffer.from('secret is secure'));
  assert.equal(decodeKeySecret('YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=')?.length, 32);
  assert.deepEqual(decodeKeySecret(''), Buffer.alloc(0));
  // CR/LF are skipped by Go's decoder
  assert.deepEqual(decodeKeySecret('c2VjcmV0\r\nIGlzIHNlY3VyZQ==\n'), Buffer.from('secret is secure'));
  // non-zero unused bits are accepted (StdEncoding is not Strict)
  assert.deepEqual(decodeKeySecret('YR=='), Buffer.from('a'));
  for (const bad of ['c2VjcmV0IGlzIHNlY3VyZQ', 'c2VjcmV0IGlzIHNlY3VyZQ=', 'P@ssword', 'YQ==YQ==', 'YQ===', '====', 'Y', 'ab-_', ' YWJj', 'YWJj ', 'YW\tJj']) {
    assert.equal(decodeKeySecret(bad), undefined, bad);
  }
});
