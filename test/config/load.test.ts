// The loader end to end: files on disk, the KMS task-page examples, format detection, YAML 1.1
// (go-yaml v2) scalar rules, strict decoding order, defaults, content hash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadEncryptionConfigFile, parseEncryptionConfig } from '../../src/config/load.js';

const TASK_PAGE = fileURLToPath(new URL('../fixtures/configs/task-page/', import.meta.url));
const HEAD = 'apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n';

function fails(text: string, options: { reload?: boolean } = {}): ConfigError {
  try {
    parseEncryptionConfig(text, 'enc.yaml', options);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError');
}

function decodeCause(text: string): string {
  const err = fails(text);
  assert.equal(err.code, 'CONFIG_DECODE', err.message);
  const prefix = 'error decoding encryption provider configuration file "enc.yaml": ';
  assert.ok(err.message.startsWith(prefix), err.message);
  return err.message.slice(prefix.length);
}

function kmsDoc(...lines: string[]): string {
  return `${HEAD}resources:\n  - resources: [secrets]\n    providers:\n      - kms:\n${lines.map((l) => `          ${l}\n`).join('')}`;
}

test('KMS task page: what kube-apiserver does with its three examples as printed', async () => {
  // Example 1 ("Encrypting your data with the KMS provider") is NOT valid YAML: `   - identity: {}`
  // sits at column 4, between the entry list (column 3) and the providers list (column 5), so
  // libyaml/go-yaml stop with "did not find expected '-' indicator". go-yaml v2 reports parser
  // errors with libyaml's 0-based line, hence "line 10" for the problem on line 11 — the exact
  // text kube-apiserver prints. The intended meaning (kms, then identity to read old plaintext)
  // is valid/task-page-1-repaired.yaml.
  const one = join(TASK_PAGE, '1-encrypting-your-data.yaml');
  await assert.rejects(loadEncryptionConfigFile(one), {
    code: 'CONFIG_DECODE',
    message: `error decoding encryption provider configuration file ${JSON.stringify(one)}: yaml: line 10: did not find expected '-' indicator`,
  });
  // Example 2 ("Switching from a local encryption provider") is valid YAML, and `name : myKmsPlugin`
  // (space before the colon) is an ordinary key, but the placeholder `<BASE 64 ENCODED SECRET>` is
  // not base64, so validation rejects it without echoing it.
  const two = join(TASK_PAGE, '2-switching-to-kms.yaml');
  await assert.rejects(loadEncryptionConfigFile(two), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.code, 'CONFIG_INVALID');
    assert.equal(
      err.message,
      `error while parsing file ${JSON.stringify(two)}: resources[0].providers[1].aescbc.keys[0].secret: Invalid value: "REDACTED": secrets must be base64 encoded`,
    );
    assert.ok(!err.message.includes('BASE 64'));
    return true;
  });
  // With a real key in place of the placeholder it loads, and `name : myKmsPlugin` is the name.
  const withKey = readFileSync(two, 'utf8').replace('<BASE 64 ENCODED SECRET>', 'c2VjcmV0IGlzIHNlY3VyZQ==');
  const loaded2 = parseEncryptionConfig(withKey, 'example-2.yaml');
  const p2 = loaded2.config.resources[0]?.providers;
  assert.deepEqual(p2?.[0], {
    kms: { apiVersion: 'v1', name: 'myKmsPlugin', endpoint: 'unix:///tmp/socketfile.sock', timeoutMs: 3000, cachesize: 100 },
  });
  // Example 3 ("Disabling encryption at rest") loads as printed: legacy kind, identity first.
  const three = await loadEncryptionConfigFile(join(TASK_PAGE, '3-disabling-encryption.yaml'));
  assert.equal(three.config.apiVersion, 'v1');
  assert.equal(three.config.kind, 'EncryptionConfig');
  assert.deepEqual(three.config.resources, [
    {
      resources: ['secrets'],
      providers: [
        { identity: {} },
        { kms: { apiVersion: 'v1', name: 'myKmsPlugin', endpoint: 'unix:///tmp/socketfile.sock', timeoutMs: 3000, cachesize: 100 } },
      ],
    },
  ]);
});

test('file errors: missing file, a directory, an empty file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-config-'));
  try {
    const missing = join(dir, 'nope.yaml');
    await assert.rejects(loadEncryptionConfigFile(missing), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'CONFIG_NOT_FOUND');
      assert.equal(err.path, missing);
      assert.equal(
        err.message,
        `error reading encryption provider configuration file ${JSON.stringify(missing)}: open ${missing}: no such file or directory`,
      );
      return true;
    });
    await assert.rejects(loadEncryptionConfigFile(dir), {
      code: 'CONFIG_READ',
      message: `error reading encryption provider configuration file ${JSON.stringify(dir)}: read ${dir}: is a directory`,
    });
    const empty = join(dir, 'empty.yaml');
    writeFileSync(empty, '');
    await assert.rejects(loadEncryptionConfigFile(empty), {
      code: 'CONFIG_EMPTY',
      message: `encryption provider configuration file ${JSON.stringify(empty)} is empty`,
    });
    // whitespace is not empty: it decodes to nothing and has no kind
    assert.equal(decodeCause(' \n'), "Object 'Kind' is missing");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('content hash is sha256 of the raw bytes, string or Buffer alike', () => {
  const text = `${HEAD}resources:\n  - resources: [secrets]\n    providers: [{identity: {}}]\n`;
  const want = 'sha256:' + createHash('sha256').update(text).digest('hex');
  assert.equal(parseEncryptionConfig(text, 'a').contentHash, want);
  assert.equal(parseEncryptionConfig(Buffer.from(text), 'a').contentHash, want);
  assert.notEqual(parseEncryptionConfig(text + '\n', 'a').contentHash, want);
  const loaded = parseEncryptionConfig(text, 'some/path.yaml');
  assert.equal(loaded.path, 'some/path.yaml');
});

test('kms defaults: apiVersion v1, timeout 3s, cachesize 1000 only for v1', () => {
  const kmsOf = (text: string) => {
    const p = parseEncryptionConfig(text, 'x').config.resources[0]?.providers[0];
    assert.ok(p !== undefined && 'kms' in p);
    return p.kms;
  };
  assert.deepEqual(kmsOf(kmsDoc('name: a', 'endpoint: unix:///a.sock')), {
    apiVersion: 'v1',
    name: 'a',
    endpoint: 'unix:///a.sock',
    timeoutMs: 3000,
    cachesize: 1000,
  });
  assert.deepEqual(kmsOf(kmsDoc('apiVersion: v2', 'name: a', 'endpoint: unix:///a.sock', 'timeout: 1m30s')), {
    apiVersion: 'v2',
    name: 'a',
    endpoint: 'unix:///a.sock',
    timeoutMs: 90000,
  });
  assert.equal(kmsOf(kmsDoc('name: a', 'endpoint: unix:///a.sock', 'timeout: 250ms', 'cachesize: -1')).timeoutMs, 250);
  assert.equal(kmsOf(kmsDoc('name: a', 'endpoint: unix:///a.sock', 'timeout: 1500us')).timeoutMs, 1.5);
  // null means unset: defaults apply
  assert.equal(kmsOf(kmsDoc('name: a', 'endpoint: unix:///a.sock', 'timeout: null', 'cachesize: ~')).cachesize, 1000);
  // `timeout: "0"` is a valid Go duration (zero) and then fails validation
  const err = fails(kmsDoc('name: a', 'endpoint: unix:///a.sock', 'timeout: "0"'));
  assert.match(err.message, /kms\.timeout: Invalid value: 0s: timeout should be a positive value$/);
});

test('YAML scalars resolve like go-yaml v2 (YAML 1.1)', () => {
  const cachesize = (v: string) => {
    const p = parseEncryptionConfig(kmsDoc('name: a', 'endpoint: unix:///a.sock', `cachesize: ${v}`), 'x').config.resources[0]?.providers[0];
    assert.ok(p !== undefined && 'kms' in p);
    return p.kms.cachesize;
  };
  assert.equal(cachesize('0x10'), 16);
  assert.equal(cachesize('010'), 8);
  assert.equal(cachesize('1_000'), 1000);
  assert.equal(cachesize('1e3'), 1000); // a float that Go's JSON encoder writes as 1000
  assert.equal(cachesize('+5'), 5);
  // yes/no/on/off/y/n are booleans, so a string field rejects them
  for (const b of ['yes', 'No', 'on', 'OFF', 'y', 'n', 'true']) {
    assert.equal(
      decodeCause(kmsDoc(`name: ${b}`, 'endpoint: unix:///a.sock')),
      'json: cannot unmarshal bool into Go struct field KMSConfiguration.resources.providers.kms.name of type string',
      b,
    );
  }
  // base-60 numbers and timestamps are not special in go-yaml v2: they stay strings
  assert.equal(decodeCause(kmsDoc('name: a', 'endpoint: unix:///a.sock', 'timeout: 1:30')), 'time: unknown unit ":" in duration "1:30"');
  const named = parseEncryptionConfig(kmsDoc('name: 2001-12-14', 'endpoint: unix:///a.sock'), 'x').config.resources[0]?.providers[0];
  assert.deepEqual(named !== undefined && 'kms' in named ? named.kms.name : undefined, '2001-12-14');
  // numbers in string fields are type errors; Go json.Marshal refuses NaN/Inf outright
  assert.equal(
    decodeCause(kmsDoc('name: 12', 'endpoint: unix:///a.sock')),
    'json: cannot unmarshal number into Go struct field KMSConfiguration.resources.providers.kms.name of type string',
  );
  // int32 overflow shows Go's JSON number text: exact integers, floats in Go's short form
  for (const [v, text] of [['9999999999999999999', '9999999999999999999'], ['1e10', '10000000000'], ['2147483648', '2147483648'], ['1e21', '1e+21']]) {
    assert.equal(
      decodeCause(kmsDoc('name: a', 'endpoint: unix:///a.sock', `cachesize: ${v}`)),
      `json: cannot unmarshal number ${text} into Go struct field KMSConfiguration.resources.providers.kms.cachesize of type int32`,
    );
  }
  assert.equal(cachesize('-2147483648'), -2147483648);
  assert.equal(decodeCause(kmsDoc('name: a', 'endpoint: unix:///a.sock', 'cachesize: .nan')), 'json: unsupported value: NaN');
  assert.equal(decodeCause(kmsDoc('name: a', 'endpoint: unix:///a.sock', 'cachesize: -.inf')), 'json: unsupported value: -Inf');
});

test('JSON is decoded as JSON: number literals, duplicates, syntax errors', () => {
  const json = (kms: string) =>
    `{"apiVersion":"apiserver.config.k8s.io/v1","kind":"EncryptionConfiguration","resources":[{"resources":["secrets"],"providers":[{"kms":${kms}}]}]}`;
  // 1e3 is fine in YAML (a float) but not as an int32 JSON literal
  assert.equal(
    decodeCause(json('{"name":"a","endpoint":"unix:///a.sock","cachesize":1e3}')),
    'json: cannot unmarshal number 1e3 into Go struct field KMSConfiguration.resources.providers.kms.cachesize of type int32',
  );
  // unknown fields in document order (YAML input is reported in Go's sorted key order instead)
  assert.equal(
    decodeCause(json('{"zeta":1,"name":"a","alpha":2,"endpoint":"unix:///a.sock"}')),
    'strict decoding error: unknown field "resources[0].providers[0].kms.zeta", unknown field "resources[0].providers[0].kms.alpha"',
  );
  assert.equal(
    decodeCause(kmsDoc('zeta: 1', 'name: a', 'alpha: 2', 'endpoint: unix:///a.sock')),
    'strict decoding error: unknown field "resources[0].providers[0].kms.alpha", unknown field "resources[0].providers[0].kms.zeta"',
  );
  for (const [text, cause] of [
    ['{', 'unexpected end of JSON input'],
    ['{"kind" "x"}', `invalid character '"' after object key`],
    ['{"kind": x}', `invalid character 'x' looking for beginning of value`],
    ['{"kind": "x" "y"}', `invalid character '"' after object key:value pair`],
    ['{"resources": [1 2]}', `invalid character '2' after array element`],
    ['{"kind": "a\tb"}', `invalid character '\\t' in string literal`],
    ['{"kind": "\\q"}', `invalid character 'q' in string escape code`],
    ['{"cachesize": -x}', `invalid character 'x' in numeric literal`],
    ['{"cachesize": 1.}', `invalid character '}' after decimal point in numeric literal`],
    ['{"kind": tru}', `invalid character '}' in literal true (expecting 'e')`],
    ['{} {}', `invalid character '{' after top-level value`],
  ] as const) {
    assert.equal(decodeCause(text), `couldn't get version/kind; json parse error: ${cause}`, text);
  }
  // text starting with `{` after whitespace is JSON; anything else is YAML (so flow YAML works)
  assert.equal(decodeCause('  \n {"apiVersion": "v1", kind: "EncryptionConfig"}'), `couldn't get version/kind; json parse error: invalid character 'k' looking for beginning of object key string`);
});

test('strict decoding order: type errors first, a bad timeout aborts at once', () => {
  // a type error beats unknown fields
  assert.equal(
    decodeCause(kmsDoc('name: a', 'endpoint: unix:///a.sock', 'cachesize: "10"', 'bogus: 1')),
    'json: cannot unmarshal string into Go struct field KMSConfiguration.resources.providers.kms.cachesize of type int32',
  );
  // keys are decoded in sorted order (cachesize < timeout); the saved cachesize error loses to
  // the timeout's Unmarshaler error, which Go returns immediately
  assert.equal(decodeCause(kmsDoc('name: a', 'endpoint: unix:///a.sock', 'timeout: abc', 'cachesize: "10"')), 'time: invalid duration "abc"');
  assert.equal(
    decodeCause(kmsDoc('name: a', 'endpoint: unix:///a.sock', 'timeout: [1]')),
    'json: cannot unmarshal array into Go struct field KMSConfiguration.resources.providers.kms.timeout of type string',
  );
  // YAML duplicate keys come before unknown fields in the strict list
  assert.equal(
    decodeCause(`${HEAD}bogus: 1\nresources:\n  - resources: [a]\n    resources: [b]\n    providers: [{identity: {}}]\n`),
    'strict decoding error: yaml: unmarshal errors: line 6: key "resources" already set in map, unknown field "bogus"',
  );
  // several duplicates in document order, on one line
  assert.equal(
    decodeCause(`${HEAD}kind: EncryptionConfiguration\nresources:\n  - resources: [a]\n    providers:\n      - identity: {}\n        identity: {}\n`),
    'strict decoding error: yaml: unmarshal errors: line 3: key "kind" already set in map; line 8: key "identity" already set in map',
  );
  // a repeated key whose own value repeats a key: go-yaml decodes the value first, and it
  // reports the line of the repeated key's VALUE (here the list starting on line 5)
  assert.equal(
    decodeCause(`${HEAD}resources: []\nresources:\n  - resources: [a]\n    resources: [b]\n`),
    'strict decoding error: yaml: unmarshal errors: line 6: key "resources" already set in map; line 5: key "resources" already set in map',
  );
});

test('apiVersion/kind are found like Go encoding/json (case-insensitive), then checked strictly', () => {
  assert.equal(
    decodeCause('apiVersion: apiserver.config.k8s.io/v1\nKind: EncryptionConfiguration\nresources: []\n'),
    'strict decoding error: unknown field "Kind"',
  );
  assert.equal(decodeCause('apiVersion: 1\nkind: EncryptionConfiguration\n'), "couldn't get version/kind; json parse error: json: cannot unmarshal number into Go struct field .apiVersion of type string");
  // `/v1` parses as group "" version "v1": the legacy kind is accepted
  const legacy = parseEncryptionConfig('apiVersion: /v1\nkind: EncryptionConfig\nresources:\n- resources: [secrets]\n  providers: [{identity: {}}]\n', 'x');
  assert.equal(legacy.config.kind, 'EncryptionConfig');
  assert.equal(decodeCause('apiVersion: apiserver.config.k8s.io/\nkind: EncryptionConfiguration\n'), "Object 'apiVersion' is missing");
  assert.equal(decodeCause('hello'), `couldn't get version/kind; json parse error: json: cannot unmarshal string into Go value of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }`);
});

test('YAML documents: first document only, anchors and merge keys, BOM, CRLF', () => {
  const body = `${HEAD}resources:\n  - resources: [secrets]\n    providers: [{identity: {}}]\n`;
  // go-yaml reads only the first document
  assert.equal(parseEncryptionConfig(`${body}---\nnot: [valid\n`, 'x').config.resources.length, 1);
  assert.equal(parseEncryptionConfig('\ufeff' + body, 'x').config.kind, 'EncryptionConfiguration');
  assert.equal(parseEncryptionConfig(body.replace(/\n/g, '\r\n'), 'x').config.resources[0]?.resources[0], 'secrets');
  // a second document that is not even valid YAML is never looked at
  assert.equal(parseEncryptionConfig(`${body}---\n\t- [\n`, 'x').config.resources.length, 1);
});

test('merge keys and aliases resolve like go-yaml', () => {
  const text =
    `${HEAD}resources:\n  - resources: [secrets]\n    providers:\n      - kms: &k\n          name: one\n          endpoint: unix:///a.sock\n          timeout: 5s\n` +
    '  - resources: [configmaps]\n    providers:\n      - kms:\n          <<: *k\n          name: two\n';
  const loaded = parseEncryptionConfig(text, 'x');
  const second = loaded.config.resources[1]?.providers[0];
  assert.deepEqual(second !== undefined && 'kms' in second ? second.kms : undefined, {
    apiVersion: 'v1',
    name: 'two',
    endpoint: 'unix:///a.sock',
    timeoutMs: 5000,
    cachesize: 1000,
  });
  assert.equal(decodeCause(`${HEAD}resources: *nope\n`), 'yaml: unknown anchor referenced');
});

test('reload makes kms v1 names unique too', () => {
  const text = `${HEAD}resources:\n  - resources: [secrets]\n    providers:\n      - kms: {name: foo, endpoint: "unix:///1.sock"}\n      - kms: {name: foo, endpoint: "unix:///2.sock"}\n`;
  assert.doesNotThrow(() => parseEncryptionConfig(text, 'x'));
  assert.doesNotThrow(() => parseEncryptionConfig(text, 'x', { reload: false }));
  assert.equal(
    fails(text, { reload: true }).message,
    'error while parsing file "enc.yaml": resources[0].providers[1].kms.name: Invalid value: "foo": duplicate KMS provider name foo, names must be unique',
  );
});

test('a secret written as a literal block keeps its newline and still validates (Go skips CR/LF)', () => {
  const text = `${HEAD}resources:\n  - resources: [secrets]\n    providers:\n      - secretbox:\n          keys:\n            - name: k\n              secret: |\n                YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=\n`;
  const p = parseEncryptionConfig(text, 'x').config.resources[0]?.providers[0];
  assert.deepEqual(p, { secretbox: { keys: [{ name: 'k', secret: 'YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=\n' }] } });
});

test('hostile documents fail cleanly: deep nesting, self-referencing anchors, alias floods', () => {
  assert.equal(decodeCause('{"a":'.repeat(100000)), "couldn't get version/kind; json parse error: exceeded max depth");
  assert.equal(decodeCause(`${HEAD}resources: &a [*a]\n`), 'yaml: anchor value contains itself');
  const flood = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 0; i < 8; i++) flood.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(', ')}]`);
  assert.equal(decodeCause(`${HEAD}${flood.join('\n')}\n`), 'yaml: document contains excessive aliasing');
  const deepYaml = decodeCause('a: ' + '['.repeat(20000) + ']'.repeat(20000));
  assert.match(deepYaml, /^yaml: /);
});

test('YAML syntax errors use libyaml wording with go-yaml line numbers', () => {
  const cases: Array<[string, string]> = [
    ['resources:\n\t- x\n', 'yaml: line 4: found character that cannot start any token'],
    ['resources: @x\n', 'yaml: line 3: found character that cannot start any token'],
    ['resources: - b\n', 'yaml: line 3: block sequence entries are not allowed in this context'],
    ['resources: x: y\n', 'yaml: line 3: mapping values are not allowed in this context'],
    ['resources: "open\n', 'yaml: line 4: found unexpected end of stream'],
    // parser errors: go-yaml v2 prints libyaml's 0-based line
    ['resources:\n  a: 1\n b: 2\n', 'yaml: line 4: did not find expected key'],
    ['resources:\n  - x:\n    - a\n   - b\n', "yaml: line 5: did not find expected '-' indicator"],
    // while a more indented `- b` right after `- a` is just the plain scalar "a - b"
    ['resources:\n  - a\n   - b\n', 'json: cannot unmarshal string into Go struct field EncryptionConfiguration.resources of type v1.ResourceConfiguration'],
  ];
  for (const [body, cause] of cases) assert.equal(decodeCause(HEAD + body), cause, body);
  // libyaml takes YAML 1.1 only, so a `%YAML 1.2` directive is refused (and `yes` stays a boolean otherwise)
  assert.equal(decodeCause(`%YAML 1.2\n---\n${HEAD}`), 'yaml: found incompatible YAML document');
  assert.doesNotThrow(() => parseEncryptionConfig(`%YAML 1.1\n---\n${HEAD}resources:\n- resources: [secrets]\n  providers: [{identity: {}}]\n`, 'x'));
});

test('field names in strict errors are Go-quoted', () => {
  assert.equal(decodeCause(`${HEAD}"we\\"ird\\n": 1\n`), 'strict decoding error: unknown field "we\\"ird\\n"');
});
