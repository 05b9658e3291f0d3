// Resource strings, the lookup table (exact → group wildcard → *.*), concatenation of a plain
// resource listed in several entries, and kube's masking errors (TestWildcardMasking,
// TestWildcardStructure in config_test.go).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConfigError,
  buildResourceTable,
  groupResourceString,
  listProviders,
  parseGroupResource,
} from '../../src/config/resources.js';
import type { EncryptionConfiguration, ProviderConfiguration } from '../../src/config/types.js';

function kms(name: string): ProviderConfiguration {
  return { kms: { apiVersion: 'v1', name, endpoint: 'unix:///tmp/testprovider.sock', timeoutMs: 3000, cachesize: 10 } };
}

function config(...entries: Array<[string[], ProviderConfiguration[]]>): EncryptionConfiguration {
  return {
    apiVersion: 'apiserver.config.k8s.io/v1',
    kind: 'EncryptionConfiguration',
    resources: entries.map(([resources, providers]) => ({ resources, providers })),
  };
}

test('parseGroupResource splits at the first dot (schema.ParseGroupResource)', () => {
  assert.deepEqual(parseGroupResource('secrets'), { group: '', resource: 'secrets' });
  assert.deepEqual(parseGroupResource('*.'), { group: '', resource: '*' });
  assert.deepEqual(parseGroupResource('*.apps'), { group: 'apps', resource: '*' });
  assert.deepEqual(parseGroupResource('*.*'), { group: '*', resource: '*' });
  assert.deepEqual(parseGroupResource('pandas.awesome.bears.example'), { group: 'awesome.bears.example', resource: 'pandas' });
  assert.deepEqual(parseGroupResource('secrets.'), { group: '', resource: 'secrets' });
  assert.deepEqual(parseGroupResource(''), { group: '', resource: '' });
  assert.equal(groupResourceString({ group: '', resource: '*' }), '*.');
  assert.equal(groupResourceString({ group: '*', resource: '*' }), '*.*');
  assert.equal(groupResourceString({ group: 'apps', resource: 'deployments' }), 'deployments.apps');
  assert.equal(groupResourceString({ group: '', resource: 'secrets' }), 'secrets');
});

test('lookup order: exact, then <group>/*, then *.* (kube TestWildcardStructure)', () => {
  const c = config(
    [['configmaps', '*.apps'], [kms('kms')]],
    [['secrets'], [kms('another-kms'), { identity: {} }]],
    [['*.'], [kms('fancy')]],
    [['*.*'], [kms('yet-another-provider')]],
  );
  const table = buildResourceTable(c);
  const first = (r: string): string => {
    const p = table.providersFor(parseGroupResource(r))?.[0];
    assert.ok(p !== undefined && 'kms' in p, r);
    return p.kms.name;
  };
  assert.equal(first('configmaps'), 'kms');
  assert.equal(first('secrets'), 'another-kms');
  assert.equal(first('events'), 'fancy');
  assert.equal(first('deployments.apps'), 'kms');
  assert.equal(first('pods'), 'fancy');
  assert.equal(first('pandas'), 'fancy');
  assert.equal(first('pandas.bears'), 'yet-another-provider');
  assert.equal(first('jobs.apps'), 'kms');
  assert.deepEqual(
    table.rules.map((r) => groupResourceString(r.groupResource)),
    ['configmaps', '*.apps', 'secrets', '*.', '*.*'],
  );
});

test('no rule applies: undefined (the caller stores plaintext)', () => {
  const table = buildResourceTable(config([['secrets'], [{ identity: {} }]]));
  assert.equal(table.providersFor({ group: '', resource: 'configmaps' }), undefined);
  assert.equal(table.providersFor({ group: 'apps', resource: 'secrets' }), undefined);
  assert.notEqual(table.providersFor({ group: '', resource: 'secrets' }), undefined);
});

test('a plain resource in several entries gets the provider lists concatenated in entry order', () => {
  const a = kms('a');
  const b = { identity: {} } as ProviderConfiguration;
  const c = kms('c');
  const table = buildResourceTable(config([['secrets', 'configmaps'], [a, b]], [['pods'], [kms('x')]], [['secrets'], [c]]));
  assert.deepEqual(table.providersFor({ group: '', resource: 'secrets' }), [a, b, c]);
  assert.deepEqual(table.providersFor({ group: '', resource: 'configmaps' }), [a, b]);
  // the provider objects are the config's own (one transformer per provider element)
  assert.equal(table.providersFor({ group: '', resource: 'secrets' })?.[0], a);
});

test('masking errors (kube TestWildcardMasking)', () => {
  const masked = (want: string, ...entries: Array<[string[], ProviderConfiguration[]]>) =>
    assert.throws(
      () => buildResourceTable(config(...entries)),
      (err: unknown) => err instanceof ConfigError && err.code === 'CONFIG_INVALID' && err.message === want,
    );
  const p = [kms('kms')];
  masked('resource "secrets" is masked by earlier rule "*."', [['configmaps', '*.', 'secrets'], p]);
  masked('resource "*." is masked by earlier rule "*."', [['*.'], p], [['*.'], [kms('kms2')]]);
  masked('resource "*.foo" is masked by earlier rule "*.foo"', [['*.foo'], p], [['*.foo'], [kms('kms2')]]);
  masked('resource "*.*" is masked by earlier rule "*.*"', [['*.*'], p], [['*.*'], [kms('kms2')]]);
  masked('resource "secrets" is masked by earlier rule "*."', [['configmaps'], p], [['*.', 'secrets'], [kms('another-kms')]]);
  masked('resource "secrets" is masked by earlier rule "*.*"', [['configmaps', '*.*', 'secrets'], p]);
  masked('resource "secrets" is masked by earlier rule "*.*"', [['configmaps'], p], [['*.*', 'secrets'], [kms('another-kms')]]);
  masked('resource "*." is masked by earlier rule "*.*"', [['configmaps', '*.*', '*.'], p]);
  masked('resource "*." is masked by earlier rule "*.*"', [['configmaps', '*.*'], p], [['*.'], [kms('another-kms')]]);
  masked('resource "deployments.apps" is masked by earlier rule "*.apps"', [['*.apps'], p], [['deployments.apps'], p]);
  // not masked: the wildcard comes later
  assert.doesNotThrow(() => buildResourceTable(config([['configmaps', 'secrets', '*.*'], p])));
  assert.doesNotThrow(() => buildResourceTable(config([['configmaps', 'secrets'], p], [['*.*'], [kms('another-kms')]])));
});

test('listProviders numbers kms providers over the whole file', () => {
  const c = config([['secrets'], [kms('a'), { identity: {} }, kms('b')]], [['configmaps'], [{ identity: {} }, kms('a')]]);
  assert.deepEqual(
    listProviders(c).map((r) => [r.entry, r.index, r.kmsIndex]),
    [
      [0, 0, 0],
      [0, 1, undefined],
      [0, 2, 1],
      [1, 0, undefined],
      [1, 1, 2],
    ],
  );
});
