// The validation rules of format.md §3.3 on in-memory configurations, phrased like kube's
// validation_encryption_test.go: each case lists the exact field errors expected, and several
// failing rules are all reported at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderFieldError, renderFieldErrors } from '../../src/config/field-errors.js';
import type { EncryptionConfiguration, KMSConfiguration, ProviderConfiguration } from '../../src/config/types.js';
import {
  assertValidEncryptionConfiguration,
  validateEncryptionConfiguration,
  type ProviderElement,
} from '../../src/config/validate.js';
import { ConfigError } from '../../src/config/errors.js';

const KEY32 = 'A/j5CnrWGB83ylcPkuUhm/6TSyrQtsNJtDPwPHNOj4Q=';

function kms(overrides: Partial<KMSConfiguration> = {}): ProviderConfiguration {
  return { kms: { apiVersion: 'v1', name: 'foo', endpoint: 'unix:///tmp/kms-provider.socket', timeoutMs: 3000, cachesize: 1, ...overrides } };
}

function config(...entries: Array<{ resources: string[]; providers: Array<ProviderConfiguration | ProviderElement> }>): EncryptionConfiguration {
  return {
    apiVersion: 'apiserver.config.k8s.io/v1',
    kind: 'EncryptionConfiguration',
    resources: entries.map((e) => ({ resources: e.resources, providers: e.providers as ProviderConfiguration[] })),
  };
}

function errors(c: EncryptionConfiguration, reload = false): string[] {
  return validateEncryptionConfiguration(c, { reload }).map(renderFieldError);
}

test('structure: resources, entries, providers (kube TestStructure)', () => {
  assert.deepEqual(errors(config()), ['resources: Required value: at least one resources is required']);
  assert.deepEqual(errors(config({ resources: [], providers: [{ aescbc: { keys: [{ name: 'foo', secret: KEY32 }] } }] })), [
    'resources[0].resources: Required value: at least one resources[0].resources is required',
  ]);
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [] })), [
    'resources[0].providers: Required value: at least one resources[0].providers is required',
  ]);
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [{ aesgcm: { keys: [{ name: 'foo', secret: KEY32 }] } }] })), []);
});

test('a providers element must hold exactly one provider', () => {
  const two: ProviderElement = {
    aesgcm: { keys: [{ name: 'foo', secret: KEY32 }] },
    aescbc: { keys: [{ name: 'foo', secret: 'bad' }] },
  };
  // the first provider in kube's switch order (kms, aesgcm, aescbc, secretbox) is still validated
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [two] })), [
    'resources[0].providers[0]: Invalid value: apiserver.ProviderConfiguration{AESGCM:(*apiserver.AESConfiguration)(set), AESCBC:(*apiserver.AESConfiguration)(set), Secretbox:(*apiserver.SecretboxConfiguration)(nil), Identity:(*apiserver.IdentityConfiguration)(nil), KMS:(*apiserver.KMSConfiguration)(nil)}: more than one provider specified in a single element, should split into different list elements',
  ]);
  assert.match(errors(config({ resources: ['secrets'], providers: [{}] }))[0] ?? '', /provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity$/);
  // identity may appear anywhere, any number of times; no rule says the first provider encrypts
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [{ identity: {} }, { identity: {} }] })), []);
});

test('kms provider names (kube TestKMSProviderName + TestStructure duplicates)', () => {
  const v2 = (name: string, endpoint = 'unix:///tmp/2.socket') => kms({ apiVersion: 'v2', name, endpoint, cachesize: undefined });
  const dupMsg = 'Invalid value: "foo": duplicate KMS provider name foo, names must be unique';
  // v1 then v2 with one name
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [kms(), v2('foo')] })), [`resources[0].providers[1].kms.name: ${dupMsg}`]);
  // two v2
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [v2('foo'), v2('foo')] })), [`resources[0].providers[1].kms.name: ${dupMsg}`]);
  // across entries
  assert.deepEqual(
    errors(config({ resources: ['secrets'], providers: [v2('foo')] }, { resources: ['configmaps'], providers: [v2('foo')] })),
    [`resources[1].providers[0].kms.name: ${dupMsg}`],
  );
  // two v1 share a name unless reload is on
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [kms(), kms()] })), []);
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [kms(), kms()] }), true), [`resources[0].providers[1].kms.name: ${dupMsg}`]);
  // order matters: v2 first, then v1 with the same name is fine when reload is off
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [v2('foo'), kms()] })), []);
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [v2('foo'), kms()] }), true), [`resources[0].providers[1].kms.name: ${dupMsg}`]);
  // ':' is allowed for v1 only
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [kms({ name: 'foo:bar' })] })), []);
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [v2('foo:bar')] })), [
    `resources[0].providers[0].kms.name: Invalid value: "foo:bar": invalid KMS provider name foo:bar, must not contain ':'`,
  ]);
  assert.deepEqual(errors(config({ resources: ['secrets'], providers: [kms({ name: '' })] })), [
    'resources[0].providers[0].kms.name: Required value: name is a mandatory field for a provider',
  ]);
});

test('kms timeout, endpoint, cachesize, apiVersion', () => {
  const p = 'resources[0].providers[0].kms';
  const one = (o: Partial<KMSConfiguration>) => errors(config({ resources: ['secrets'], providers: [kms(o)] }));
  assert.deepEqual(one({ timeoutMs: 60000 }), []);
  assert.deepEqual(one({ timeoutMs: -60000 }), [`${p}.timeout: Invalid value: -1m0s: timeout should be a positive value`]);
  assert.deepEqual(one({ timeoutMs: 0 }), [`${p}.timeout: Invalid value: 0s: timeout should be a positive value`]);
  assert.deepEqual(one({ timeoutMs: 0.5 }), []);
  assert.deepEqual(one({ endpoint: '' }), [`${p}.endpoint: Invalid value: "": endpoint is a mandatory field for a kms`]);
  assert.deepEqual(one({ endpoint: 'https://www.foo.com' }), [
    `${p}.endpoint: Invalid value: "https://www.foo.com": unsupported scheme "https" for KMS provider, only unix is supported`,
  ]);
  assert.deepEqual(one({ endpoint: 'unix:///foo\n.socket' }), [
    `${p}.endpoint: Invalid value: "unix:///foo\\n.socket": invalid endpoint for kms provider, error: parse "unix:///foo\\n.socket": net/url: invalid control character in URL`,
  ]);
  assert.deepEqual(one({ endpoint: 'tmp/kms.sock' }), [`${p}.endpoint: Invalid value: "tmp/kms.sock": unsupported scheme "" for KMS provider, only unix is supported`]);
  assert.deepEqual(one({ cachesize: 10 }), []);
  assert.deepEqual(one({ cachesize: -1 }), []);
  assert.deepEqual(one({ cachesize: 0 }), [`${p}.cachesize: Invalid value: 0: cachesize should be a positive value, or negative to disable`]);
  assert.deepEqual(one({ apiVersion: 'v2', cachesize: 10 }), [`${p}.cachesize: Invalid value: 10: cachesize is not supported in v2`]);
  assert.deepEqual(one({ apiVersion: 'v2', cachesize: undefined }), []);
  assert.deepEqual(one({ apiVersion: 'v3', cachesize: undefined }), [
    `${p}.apiVersion: Invalid value: "v3": unsupported apiVersion apiVersion for KMS provider, only v1 and v2 are supported`,
  ]);
  // a set cachesize with an unknown apiVersion hits both rules, in kube's order
  assert.deepEqual(one({ apiVersion: 'v3', cachesize: 5 }), [
    `${p}.cachesize: Invalid value: 5: cachesize is not supported in v2`,
    `${p}.apiVersion: Invalid value: "v3": unsupported apiVersion apiVersion for KMS provider, only v1 and v2 are supported`,
  ]);
});

test('keys (kube TestKey): secrets are never shown', () => {
  const p = 'resources[0].providers[0]';
  const keys = (provider: 'aesgcm' | 'aescbc' | 'secretbox', ...k: Array<{ name: string; secret: string }>) =>
    errors(config({ resources: ['secrets'], providers: [{ [provider]: { keys: k } } as ProviderConfiguration] }));
  assert.deepEqual(keys('aescbc', { name: 'foo', secret: 'c2VjcmV0IGlzIHNlY3VyZQ==' }), []);
  assert.deepEqual(keys('aescbc', { name: '', secret: 'c2VjcmV0IGlzIHNlY3VyZQ==' }), [`${p}.aescbc.keys[0].name: Required value: name is a mandatory field for a key`]);
  assert.deepEqual(keys('aescbc', { name: 'foo', secret: '' }), [`${p}.aescbc.keys[0].secret: Required value: secret is a mandatory field for a key`]);
  assert.deepEqual(keys('aesgcm', { name: 'foo', secret: 'P@ssword' }), [`${p}.aesgcm.keys[0].secret: Invalid value: "REDACTED": secrets must be base64 encoded`]);
  assert.deepEqual(keys('aesgcm', { name: 'foo', secret: 'cGFzc3dvcmQK' }), [
    `${p}.aesgcm.keys[0].secret: Invalid value: "REDACTED": secret is not of the expected length, got 9, expected one of [16 24 32]`,
  ]);
  assert.deepEqual(keys('secretbox', { name: 'foo', secret: 'c2VjcmV0IGlzIHNlY3VyZQ==' }), [
    `${p}.secretbox.keys[0].secret: Invalid value: "REDACTED": secret is not of the expected length, got 16, expected one of [32]`,
  ]);
  assert.deepEqual(keys('secretbox', { name: 'foo', secret: KEY32 }), []);
  assert.deepEqual(keys('aescbc'), [`${p}.aescbc.keys: Required value: at least one keys is required`]);
  // 24-byte AES keys are valid for aescbc and aesgcm (the doc comment's "32 bytes" is not enforced)
  assert.deepEqual(keys('aescbc', { name: 'k', secret: Buffer.alloc(24, 1).toString('base64') }), []);
  // key names are not checked for uniqueness or ':'
  assert.deepEqual(keys('aesgcm', { name: 'a:b', secret: KEY32 }, { name: 'a:b', secret: KEY32 }), []);
  // every key is checked, and errors are collected
  assert.deepEqual(keys('aesgcm', { name: '', secret: 'x' }, { name: 'k2', secret: 'YQ==' }), [
    `${p}.aesgcm.keys[0].name: Required value: name is a mandatory field for a key`,
    `${p}.aesgcm.keys[0].secret: Invalid value: "REDACTED": secrets must be base64 encoded`,
    `${p}.aesgcm.keys[1].secret: Invalid value: "REDACTED": secret is not of the expected length, got 1, expected one of [16 24 32]`,
  ]);
});

test('resource names and overlaps within one list (kube TestStructure)', () => {
  const r = (...resources: string[]) => errors(config({ resources, providers: [{ identity: {} }] }));
  const at = (i: number, v: string, d: string) => `resources[0].resources[${i}]: Invalid value: "${v}": ${d}`;
  assert.deepEqual(r('events.events.k8s.io'), [at(0, 'events.events.k8s.io', "'*.events.k8s.io' objects are stored using the 'events' API group in etcd. Use 'events' instead in the config file")]);
  assert.deepEqual(r('*.extensions'), [at(0, '*.extensions', "'extensions' group has been removed and cannot be used for encryption")]);
  assert.deepEqual(r('*'), [at(0, '*', "use '*.' to encrypt all the resources from core API group or *.* to encrypt all resources")]);
  assert.deepEqual(r('apiServerIPInfo'), [at(0, 'apiServerIPInfo', 'resource name should not contain capital letters')]);
  for (const n of ['apiserveripinfo', 'serviceipallocations', 'servicenodeportallocations']) {
    assert.deepEqual(r(n), [at(0, n, 'resources which do not have REST API/s cannot be encrypted')]);
  }
  assert.deepEqual(r('*.apps', '*.'), []);
  assert.deepEqual(r('deployments.apps', '*.'), []);
  assert.deepEqual(r('*.', 'foos.*'), [at(1, 'foos.*', 'encrypting the same resource across groups is not supported')]);
  const list = (...items: string[]) => `[]string{${items.map((i) => `"${i}"`).join(', ')}}`;
  const dup = (...items: string[]) => `resources[0].resources: Invalid value: ${list(...items)}: the same resource cannot be specified multiple times`;
  const overlap = (...items: string[]) =>
    `resources[0].resources: Invalid value: ${list(...items)}: using overlapping resources such as 'secrets' and '*.' in the same resource list is not allowed as they will be masked`;
  assert.deepEqual(r('secrets', 'secrets'), [dup('secrets', 'secrets')]);
  assert.deepEqual(r('secrets', 'secrets', 'secrets', 'secrets'), [dup('secrets', 'secrets', 'secrets', 'secrets')]);
  assert.deepEqual(r('secrets', 'secrets.'), [dup('secrets', 'secrets.')]);
  assert.deepEqual(r('*.apps', '*.', '*.*'), [overlap('*.apps', '*.', '*.*')]);
  assert.deepEqual(r('deployments.apps', '*.apps'), [overlap('deployments.apps', '*.apps')]);
  assert.deepEqual(r('secrets', '*.'), [overlap('secrets', '*.')]);
  assert.deepEqual(r('pods', '*.'), [overlap('pods', '*.')]);
  assert.deepEqual(r('secrets', '*.*'), [overlap('secrets', '*.*')]);
  assert.deepEqual(r('*.', '*.*'), [overlap('*.', '*.*')]);
  // an overlap check runs before the name checks, and both report
  assert.deepEqual(r('Secrets', '*.'), [overlap('Secrets', '*.'), at(0, 'Secrets', 'resource name should not contain capital letters')]);
});

test('errors are aggregated like utilerrors.Aggregate and thrown once with the file name', () => {
  const c = config(
    { resources: ['secrets'], providers: [kms({ timeoutMs: 0, endpoint: '' })] },
    { resources: ['secrets'], providers: [kms({ timeoutMs: 0, endpoint: '' })] },
  );
  const errs = validateEncryptionConfiguration(c);
  assert.equal(errs.length, 4);
  assert.equal(
    renderFieldErrors(errs),
    '[resources[0].providers[0].kms.timeout: Invalid value: 0s: timeout should be a positive value, ' +
      'resources[0].providers[0].kms.endpoint: Invalid value: "": endpoint is a mandatory field for a kms, ' +
      'resources[1].providers[0].kms.timeout: Invalid value: 0s: timeout should be a positive value, ' +
      'resources[1].providers[0].kms.endpoint: Invalid value: "": endpoint is a mandatory field for a kms]',
  );
  // identical messages are shown once
  assert.equal(renderFieldErrors([...errs.slice(0, 1), ...errs.slice(0, 1)]), renderFieldError(errs[0]!));
  assert.throws(
    () => assertValidEncryptionConfiguration(c, '/etc/kubernetes/enc.yaml'),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.code === 'CONFIG_INVALID' &&
      err.path === '/etc/kubernetes/enc.yaml' &&
      err.fieldErrors.length === 4 &&
      err.message.startsWith('error while parsing file "/etc/kubernetes/enc.yaml": [resources[0].providers[0].kms.timeout'),
  );
  assert.doesNotThrow(() => assertValidEncryptionConfiguration(config({ resources: ['secrets'], providers: [kms()] }), 'x'));
});

test('validation does not throw on malformed in-memory objects; null providers count as unset', () => {
  assert.match(
    errors(config({ resources: ['secrets'], providers: [{ kms: null, identity: {} } as unknown as ProviderElement] })).join(),
    /^$/,
  );
  const junk = [
    null,
    {},
    { resources: 'x' },
    { resources: [null] },
    { resources: [{ resources: [1, null], providers: [null, { kms: {} }, { aescbc: {} }, { kms: 'x' }, { aesgcm: 5 }] }] },
  ];
  for (const j of junk) {
    assert.ok(Array.isArray(validateEncryptionConfiguration(j as unknown as EncryptionConfiguration)));
  }
});
