import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseKmsEndpoint } from '../../src/kms/endpoint.js';
import { createKmsProviders } from '../../src/kms/factory.js';

test('kms endpoints parse as kube-apiserver dials them (format.md §2.3)', () => {
  assert.deepEqual(parseKmsEndpoint('unix:///var/run/kms.sock'), { address: '/var/run/kms.sock', abstract: false, grpcTarget: 'unix:/var/run/kms.sock' });
  assert.equal(parseKmsEndpoint('UNIX:///tmp/x.sock').address, '/tmp/x.sock');
  assert.equal(parseKmsEndpoint('unix://ignored-host/tmp/x.sock').address, '/tmp/x.sock');
  assert.equal(parseKmsEndpoint('unix:///tmp/a%20b.sock').address, '/tmp/a b.sock');
  const abs = parseKmsEndpoint('unix:///@kms-provider.sock');
  assert.equal(abs.address, '@kms-provider.sock');
  assert.equal(abs.abstract, true);
  assert.equal(abs.grpcTarget, 'unix:\0kms-provider.sock');
  const [major = 0, minor = 0] = process.versions.uv.split('.').map(Number);
  if (major === 1 && minor < 47) assert.match(abs.caveat ?? '', /nodejs\/node#50889/);
  assert.equal(parseKmsEndpoint(`unix:///@${'n'.repeat(107)}`).caveat, undefined);
});

test('kms endpoint errors use kube-apiserver texts', () => {
  const cases: Array<[string, string]> = [
    ['', "remote KMS provider can't use empty string as endpoint"],
    ['tcp://localhost:8080', 'unsupported scheme "tcp" for remote KMS provider'],
    ['/var/run/kms.sock', 'unsupported scheme "" for remote KMS provider'],
    ['https://example.com/x', 'unsupported scheme "https" for remote KMS provider'],
  ];
  for (const [endpoint, message] of cases) {
    assert.throws(() => parseKmsEndpoint(endpoint), (err: Error & { code?: string }) => err.message === message && err.code === 'KMS_ENDPOINT_INVALID', endpoint);
  }
  assert.throws(() => parseKmsEndpoint('unix:relative.sock'), /no socket path/);
  assert.throws(() => parseKmsEndpoint('unix:///@'), /empty abstract socket name/);
});

test('factory refuses unknown apiVersions and bad endpoints with kube-apiserver texts', async () => {
  const kms = createKmsProviders();
  try {
    assert.throws(() => kms.factory({ apiVersion: 'v3', name: 'x', endpoint: 'unix:///tmp/x', timeoutMs: 1000 }, 0),
      { message: 'could not configure KMS plugin "x", unsupported KMS API version "v3"' });
    assert.throws(() => kms.factory({ apiVersion: 'v2', name: 'x', endpoint: 'tcp://a:1', timeoutMs: 1000 }, 0),
      { message: 'could not configure KMSv2-Plugin\'s probe "x", error: unsupported scheme "tcp" for remote KMS provider' });
    assert.throws(() => kms.factory({ apiVersion: 'v1', name: 'y', endpoint: '', cachesize: 10, timeoutMs: 1000 }, 0),
      { message: 'could not configure KMSv1-Plugin\'s probe "y", error: remote KMS provider can\'t use empty string as endpoint' });
    assert.deepEqual(kms.healthChecks(), []);
  } finally {
    await kms.close();
  }
  assert.throws(() => kms.factory({ apiVersion: 'v2', name: 'x', endpoint: 'unix:///tmp/x', timeoutMs: 1000 }, 0), /closed/);
});
