// The plugin's KEK creation-time gauge: absent until a backend reports a time, and absent again when
// the new current key has none (a labelless prom-client gauge would otherwise export 0, which the
// AtrestKekTooOld rule reads as a key created in 1970).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { PluginMetrics } from '../../src/plugin/metrics.js';

const NAME = 'atrest_kms_plugin_current_key_created_timestamp_seconds';

async function samples(registry: Registry): Promise<string[]> {
  return (await registry.metrics()).split('\n').filter((l) => l.startsWith(NAME));
}

test('KEK creation-time gauge: absent, set, absent again for a key without a time', async () => {
  const registry = new Registry();
  const metrics = new PluginMetrics(registry);
  assert.deepEqual(await samples(registry), [], 'no sample before a key is known');
  metrics.setCurrentKeyId('local:v1:aaaa', false, 1_700_000_000_000);
  assert.deepEqual(await samples(registry), [`${NAME} 1700000000`]);
  metrics.setCurrentKeyId('pkcs11:t:k:0002', true);
  assert.deepEqual(await samples(registry), [], 'a key with no creation time exports no sample, not 0');
});
