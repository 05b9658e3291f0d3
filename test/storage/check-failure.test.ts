// Issue #20, "cannot check is not lost": which read failures say a value is undecryptable and which
// only that its KMS plugin (or the store) could not be reached; and the CheckedReader that asks each
// kms provider's health once, then stops calling a provider that is down. The transformer here is a
// counting stand-in (the real stack with a real plugin is test/tools/cannot-check.test.ts): the
// counts are how "fail fast" is asserted without timing anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CryptoError } from '../../src/crypto/errors.js';
import { EnvelopeError, KmsNotReadyError, KmsResponseError, KmsUnavailableError, KmsWriteError } from '../../src/kms/errors.js';
import { StoreError } from '../../src/storage/errors.js';
import { TransformError } from '../../src/transform/errors.js';
import type { TransformResult, Transformer } from '../../src/transform/types.js';
import { CheckIncompleteError, classifyReadFailure, isUnreachable, retiredKeyRefusal } from '../../src/storage/check-failure.js';
import { CheckedReader, type KmsProviderProbe } from '../../src/storage/checked-read.js';
import { checkExitCode, exitCodeFor } from '../../src/cli/exit-codes.js';
import { ToolUsageError } from '../../src/cli/engine-options.js';
import { InvalidArgumentError } from 'commander';

const grpc = (code: string) => new KmsUnavailableError(`rpc error: code = ${code} desc = x`, code);
/** What the kms v2 transformer throws when the plugin's Decrypt fails (format.md §1.6), inside the chain's TransformError. */
const readFailure = (inner: Error) => new TransformError(inner instanceof KmsUnavailableError ? 'KMS_UNAVAILABLE' : 'DECRYPT_FAILED',
  `failed to decrypt DEK, error: ${inner.message}`, { storageKey: '/registry/secrets/ns/s', cause: inner });

test('a plugin that is not reached, times out or has no DEK seed yet: unreachable; a retired KEK version: needs-retired-key; one that answers no: undecryptable', () => {
  for (const code of ['Unavailable', 'DeadlineExceeded', 'Canceled', 'ResourceExhausted', 'Aborted']) {
    assert.equal(classifyReadFailure(readFailure(new KmsUnavailableError(`failed to decrypt DEK, error: x`, code, { cause: grpc(code) }))), 'unreachable', code);
  }
  // FailedPrecondition is what atrest's plugin answers for a retired KEK version (src/plugin/kms-handlers.ts): not lost.
  assert.equal(classifyReadFailure(readFailure(new KmsUnavailableError('failed to decrypt DEK, error: x', 'FailedPrecondition', { cause: grpc('FailedPrecondition') }))), 'needs-retired-key');
  for (const code of ['InvalidArgument', 'NotFound', 'Internal', 'Unknown', 'PermissionDenied']) {
    assert.equal(classifyReadFailure(readFailure(new KmsUnavailableError(`failed to decrypt DEK, error: x`, code, { cause: grpc(code) }))), 'undecryptable', code);
  }
  assert.equal(classifyReadFailure(new KmsNotReadyError('KMS_NOT_READY', 'got unexpected nil transformer')), 'unreachable');
  assert.equal(classifyReadFailure(new StoreError('UNAVAILABLE', 'etcd list: no connection')), 'unreachable');
  assert.equal(classifyReadFailure(new CheckIncompleteError('the store could not be read')), 'unreachable');
  // Local verdicts on the value itself.
  assert.equal(classifyReadFailure(new CryptoError('DECRYPT_FAILED', 'cipher: message authentication failed')), 'undecryptable');
  assert.equal(classifyReadFailure(new EnvelopeError('invalid data encountered by envelope transformer')), 'undecryptable');
  assert.equal(classifyReadFailure(new TransformError('NO_MATCHING_PREFIX', 'no matching prefix found')), 'undecryptable');
  assert.equal(classifyReadFailure(new KmsResponseError('KMS provider api version v2 is not supported')), 'undecryptable');
});

test('aggregates and wrappers are judged by what they hold; one unreachable part makes the whole unreachable', () => {
  const authFailure = new CryptoError('DECRYPT_FAILED', 'cipher: message authentication failed');
  const down = grpc('DeadlineExceeded');
  const both = new TransformError('DECRYPT_FAILED', '[a, b]', { storageKey: '/registry/secrets/ns/s', errors: [authFailure, down] });
  assert.equal(isUnreachable(both), true, 'a provider that could not be asked might have read it');
  // Two plugin verdicts: the chain copies the code KMS_UNAVAILABLE but is not a KmsUnavailableError itself.
  const twoNo = new TransformError('KMS_UNAVAILABLE', '[a, b]', { storageKey: '/registry/secrets/ns/s', errors: [grpc('InvalidArgument'), grpc('Internal')] });
  assert.equal(isUnreachable(twoNo), false);
  assert.equal(isUnreachable(new KmsWriteError({ name: 'p', apiVersion: 'v2' }, new KmsNotReadyError('KMS_WRITE_KEY_EXPIRED', 'expired'))), false, 'an expired write seed is not a transport failure');
  assert.equal(isUnreachable(new KmsWriteError({ name: 'p', apiVersion: 'v2' }, down)), true);
  // The v1 probe wraps without a code but keeps the cause.
  assert.equal(isUnreachable(new KmsUnavailableError('failed to perform encrypt section', undefined, { cause: grpc('InvalidArgument') })), false);
  assert.equal(isUnreachable(new KmsUnavailableError('failed to perform encrypt section', undefined, { cause: down })), true);
  assert.equal(isUnreachable(new Error('plain')), false);
  assert.equal(isUnreachable('not an error'), false);
});

test('needs-retired-key: the kms v2 key_id hash is found through wrappers and aggregates; an unreachable part still wins', () => {
  const retired = new KmsUnavailableError('kms v2 provider "p": failed to decrypt DEK, error: rpc error: code = FailedPrecondition desc = retired', 'FailedPrecondition',
    { cause: grpc('FailedPrecondition'), keyIdHash: 'sha256:abc' });
  assert.deepEqual(retiredKeyRefusal(readFailure(retired)), { keyIdHash: 'sha256:abc' });
  // kms v1 values do not record their KEK version: no hash, still the same verdict.
  assert.deepEqual(retiredKeyRefusal(readFailure(grpc('FailedPrecondition'))), {});
  assert.equal(retiredKeyRefusal(readFailure(grpc('Internal'))), undefined);
  const withAuthFailure = new TransformError('KMS_UNAVAILABLE', '[a, b]', { storageKey: '/registry/secrets/ns/s', errors: [new CryptoError('DECRYPT_FAILED', 'bad tag'), retired] });
  assert.equal(classifyReadFailure(withAuthFailure), 'needs-retired-key', 'one provider needs a retired version: the value is not lost');
  const withDown = new TransformError('KMS_UNAVAILABLE', '[a, b]', { storageKey: '/registry/secrets/ns/s', errors: [retired, grpc('Unavailable')] });
  assert.equal(classifyReadFailure(withDown), 'unreachable');
  // A finding (exit 1), not "could not complete".
  assert.equal(exitCodeFor(readFailure(retired)), 1);
});

test('exit codes: 2 usage, 3 unreachable, 141 broken pipe, 1 otherwise; a check: 3 wins over 1', () => {
  assert.equal(exitCodeFor(new InvalidArgumentError('bad')), 2);
  assert.equal(exitCodeFor(new ToolUsageError('--resources: no resource named')), 2);
  assert.equal(exitCodeFor(new StoreError('UNAVAILABLE', 'etcd down')), 3);
  assert.equal(exitCodeFor(new KmsWriteError({ name: 'p', apiVersion: 'v2' }, grpc('Unavailable'))), 3);
  assert.equal(exitCodeFor(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })), 141);
  assert.equal(exitCodeFor(new Error('x', { cause: Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }) })), 141);
  assert.equal(exitCodeFor(new CryptoError('DECRYPT_FAILED', 'bad tag')), 1);
  assert.equal(checkExitCode({ complete: true, ok: true }), 0);
  assert.equal(checkExitCode({ complete: true, ok: false }), 1);
  assert.equal(checkExitCode({ complete: false, ok: false }), 3);
});

/** A transformer that counts reads and fails them as told. */
class CountingTransformer implements Transformer {
  reads = 0;
  constructor(private readonly fail: (n: number) => Error | undefined) {}
  toStorage(): Promise<Buffer> {
    throw new Error('not used');
  }
  async fromStorage(stored: Uint8Array): Promise<TransformResult> {
    this.reads++;
    const err = this.fail(this.reads);
    if (err) throw err;
    return { plaintext: Buffer.from(stored), stale: false, origin: { provider: 'kms', name: 'p', kmsApiVersion: 'v2' } };
  }
}

function probe(name: string, fails?: Error): KmsProviderProbe & { checks: number } {
  const p = { name, apiVersion: 'v2' as const, endpoint: `unix:///run/${name}.sock`, checks: 0, check: async () => {
    p.checks++;
    if (fails) throw fails;
  } };
  return p;
}

const value = (provider: string, i: number) => Buffer.from(`k8s:enc:kms:v2:${provider}:object-${i}`);

test('CheckedReader: a provider that fails its health check is never asked to decrypt; each value counts as not checked', async () => {
  const down = probe('p', new KmsUnavailableError('failed to perform status section of the healthz check for KMS Provider p, error: rpc error: code = DeadlineExceeded desc = x', 'DeadlineExceeded'));
  const reader = new CheckedReader([down]);
  const t = new CountingTransformer(() => undefined);
  const outcomes = [];
  for (let i = 0; i < 20; i++) outcomes.push(await reader.read(t, `/registry/secrets/ns/s${i}`, value('p', i)));
  assert.equal(t.reads, 0, 'no decrypt was tried');
  assert.equal(down.checks, 1, 'the health check was asked once');
  assert.ok(outcomes.every((o) => o.kind === 'unchecked'));
  const notChecked = reader.notChecked();
  assert.equal(notChecked.length, 1);
  assert.equal(notChecked[0]!.values, 20);
  assert.match(notChecked[0]!.cause, /^kms v2 provider "p" \(plugin unix:\/\/\/run\/p\.sock\): plugin unreachable: failed to perform status section/);
  // An unhealthy answer (the plugin answered) is named as such, and its values are not checked either.
  const unhealthy = new CheckedReader([probe('q', new KmsResponseError('kmsv2 Provider q is not healthy, error: got unexpected healthz status: no'))]);
  assert.equal((await unhealthy.read(t, '/registry/secrets/ns/x', value('q', 0))).kind, 'unchecked');
  assert.match(unhealthy.notChecked()[0]!.cause, /plugin unhealthy: kmsv2 Provider q is not healthy/);
});

test('CheckedReader: a plugin that dies mid-run costs one failed call; its later values are not tried; other values go on', async () => {
  const p = probe('p');
  const reader = new CheckedReader([p]);
  // Reads 1-5 succeed, the 6th times out: the plugin went away.
  const t = new CountingTransformer((n) => (n === 6 ? readFailure(new KmsUnavailableError('failed to decrypt DEK, error: x', 'DeadlineExceeded', { cause: grpc('DeadlineExceeded') })) : undefined));
  const kinds = [];
  for (let i = 0; i < 30; i++) kinds.push((await reader.read(t, `/registry/secrets/ns/s${i}`, value('p', i))).kind);
  assert.equal(t.reads, 6, 'after the first transport failure no call is made');
  assert.deepEqual(kinds.slice(0, 5), Array(5).fill('read'));
  assert.deepEqual(kinds.slice(5), Array(25).fill('unchecked'));
  assert.equal(reader.notChecked()[0]!.values, 25);
  // A value of no kms provider (aesgcm, identity) is still read.
  const local = new CountingTransformer(() => undefined);
  assert.equal((await reader.read(local, '/registry/secrets/ns/a', Buffer.from('k8s:enc:aesgcm:v1:k1:xyz'))).kind, 'read');
  assert.equal(local.reads, 1);
});

test('CheckedReader: a plugin that answers "no" (InvalidArgument) gives undecryptable values and stays in use', async () => {
  const reader = new CheckedReader([probe('p')]);
  const t = new CountingTransformer((n) => (n % 2 === 0 ? readFailure(new KmsUnavailableError('failed to decrypt DEK, error: x', 'InvalidArgument', { cause: grpc('InvalidArgument') })) : undefined));
  const kinds = [];
  for (let i = 0; i < 6; i++) kinds.push((await reader.read(t, `/registry/secrets/ns/s${i}`, value('p', i))).kind);
  assert.deepEqual(kinds, ['read', 'undecryptable', 'read', 'undecryptable', 'read', 'undecryptable']);
  assert.equal(t.reads, 6);
  assert.deepEqual(reader.notChecked(), []);
});

test('CheckedReader: a retired KEK version gives needs-retired-key values (with the key_id hash); the provider stays in use', async () => {
  const reader = new CheckedReader([probe('p')]);
  const refusal = readFailure(new KmsUnavailableError('failed to decrypt DEK, error: x', 'FailedPrecondition', { cause: grpc('FailedPrecondition'), keyIdHash: 'sha256:old' }));
  const t = new CountingTransformer((n) => (n <= 3 ? refusal : undefined));
  const outcomes = [];
  for (let i = 0; i < 5; i++) outcomes.push(await reader.read(t, `/registry/secrets/ns/s${i}`, value('p', i)));
  assert.deepEqual(outcomes.map((o) => o.kind), ['needs-retired-key', 'needs-retired-key', 'needs-retired-key', 'read', 'read']);
  const first = outcomes[0]!;
  assert.ok(first.kind === 'needs-retired-key' && first.keyIdHash === 'sha256:old' && first.error.includes('failed to decrypt DEK'));
  assert.equal(t.reads, 5);
  assert.deepEqual(reader.notChecked(), []);
});

test('CheckedReader: the longest kms prefix wins (kms v1 names may contain ":")', async () => {
  const short = { name: 'a', apiVersion: 'v1' as const, endpoint: 'unix:///a.sock', check: async () => { throw grpc('Unavailable'); } };
  const long = { name: 'a:b', apiVersion: 'v1' as const, endpoint: 'unix:///ab.sock', check: async () => undefined };
  const reader = new CheckedReader([short, long]);
  const t = new CountingTransformer(() => undefined);
  assert.equal((await reader.read(t, '/registry/secrets/ns/s', Buffer.from('k8s:enc:kms:v1:a:b:xyz'))).kind, 'read');
  assert.equal((await reader.read(t, '/registry/secrets/ns/s', Buffer.from('k8s:enc:kms:v1:a:xyz'))).kind, 'unchecked');
});
