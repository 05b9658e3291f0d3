// The fixture corpus: every file in test/fixtures/configs/invalid/ fails with exactly the
// message and code recorded in invalid/expected.json; every file in valid/ loads and equals the
// object recorded in valid/expected.json. Expected texts are kube-apiserver's (format.md §3)
// with the file named as `error ... file "<path>"`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../src/config/errors.js';
import { loadEncryptionConfigFile } from '../../src/config/load.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/configs/', import.meta.url));
const INVALID = join(FIXTURES, 'invalid');
const VALID = join(FIXTURES, 'valid');

interface Expected {
  code: string;
  message: string;
  reload?: boolean;
}

const invalidExpected = JSON.parse(readFileSync(join(INVALID, 'expected.json'), 'utf8')) as Record<string, Expected>;
const validExpected = JSON.parse(readFileSync(join(VALID, 'expected.json'), 'utf8')) as Record<string, unknown>;

test('the invalid corpus has at least 30 configurations, each with an expectation', () => {
  const files = readdirSync(INVALID).filter((f) => f !== 'expected.json');
  assert.ok(files.length >= 30, `only ${files.length} invalid fixtures`);
  assert.deepEqual(files.sort(), Object.keys(invalidExpected).sort());
});

test('every invalid configuration fails with its exact message', async (t) => {
  for (const [file, want] of Object.entries(invalidExpected)) {
    await t.test(file, async () => {
      const path = join(INVALID, file);
      const err = await loadEncryptionConfigFile(path, { reload: want.reload === true }).then(
        () => assert.fail(`${file} loaded but should fail`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ConfigError, `not a ConfigError: ${String(err)}`);
      assert.equal(err.message, want.message.replace('{path}', JSON.stringify(path)));
      assert.equal(err.code, want.code);
      assert.equal(err.path, path);
      assert.ok(!err.message.includes('\n'), 'message must be one line');
    });
  }
});

test('every valid configuration loads to its recorded object', async (t) => {
  const files = readdirSync(VALID).filter((f) => f !== 'expected.json');
  assert.deepEqual(files.sort(), Object.keys(validExpected).sort());
  for (const file of files) {
    await t.test(file, async () => {
      const loaded = await loadEncryptionConfigFile(join(VALID, file));
      assert.deepEqual(loaded.config, validExpected[file]);
      assert.match(loaded.contentHash, /^sha256:[0-9a-f]{64}$/);
    });
  }
});
