// Issue #20 §3: how KMS errors name a provider (src/kms/naming.ts). Against a real plugin (killed,
// slow, answering an error): test/kms/python-plugin.test.ts; through the server: test/reliability/errors-name-cause.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KmsUnavailableError, KmsWriteError } from '../../src/kms/errors.js';
import { describeKmsFailure, isPluginUnreachable, kmsProviderLabel } from '../../src/kms/naming.js';

test('label, "plugin unreachable" only for a call that found no connection, through wrapping causes', () => {
  const ref = { name: 'vault', apiVersion: 'v2' as const, endpoint: 'unix:///run/kms.sock' };
  assert.equal(kmsProviderLabel(ref), 'kms v2 provider "vault" (plugin unix:///run/kms.sock)');
  assert.equal(kmsProviderLabel({ name: 'p', apiVersion: 'v1' }), 'kms v1 provider "p"');
  const down = new KmsUnavailableError('rpc error: code = DeadlineExceeded desc = Deadline exceeded … Waiting for LB pick', 'DeadlineExceeded', { unreachable: true });
  const answered = new KmsUnavailableError('rpc error: code = Unavailable desc = KMIP server 10.0.0.5:5696 unreachable: connect ECONNREFUSED', 'Unavailable');
  assert.ok(isPluginUnreachable(down));
  assert.ok(isPluginUnreachable(new Error('outer', { cause: new Error('middle', { cause: down }) })));
  assert.ok(!isPluginUnreachable(answered), 'the plugin answered: its backend is unreachable, not the plugin');
  assert.equal(describeKmsFailure(ref, down, 'cannot decrypt'), `kms v2 provider "vault" (plugin unix:///run/kms.sock) cannot decrypt: plugin unreachable: ${down.message}`);
  assert.equal(describeKmsFailure(ref, answered), `kms v2 provider "vault" (plugin unix:///run/kms.sock): ${answered.message}`);
  const write = new KmsWriteError(ref, down);
  assert.equal(write.code, 'KMS_UNAVAILABLE');
  assert.match(write.message, /^kms v2 provider "vault" \(plugin unix:\/\/\/run\/kms\.sock\) cannot encrypt: plugin unreachable: rpc error/);
});
