import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { KmsMetrics, createTransformationMetrics } from '../../src/kms/metrics.js';
import { KmsUnavailableError } from '../../src/kms/errors.js';

test('transformation metrics: status is OK, the gRPC code of a KMS failure, or Unknown', async () => {
  const registry = new Registry();
  const m = createTransformationMetrics(registry);
  m.record('to_storage', 'k8s:enc:kms:v2:', 0.001);
  m.record('to_storage', 'k8s:enc:kms:v2:', 0.001, new KmsUnavailableError('down', 'Unavailable'));
  m.record('from_storage', 'k8s:enc:aesgcm:v1:', 0.001, new Error('bad'));
  m.record('from_storage', 'k8s:enc:kms:v2:', 0.001, new Error('wrapped', { cause: new KmsUnavailableError('x', 'DeadlineExceeded') }));
  const again = createTransformationMetrics(registry); // a reload registers nothing twice
  again.record('to_storage', 'k8s:enc:kms:v2:', 0.001);
  const text = await registry.metrics();
  assert.match(text, /apiserver_storage_transformation_operations_total\{transformation_type="to_storage",transformer_prefix="k8s:enc:kms:v2:",status="OK"\} 2/);
  assert.match(text, /apiserver_storage_transformation_operations_total\{transformation_type="to_storage",transformer_prefix="k8s:enc:kms:v2:",status="Unavailable"\} 1/);
  assert.match(text, /apiserver_storage_transformation_operations_total\{transformation_type="from_storage",transformer_prefix="k8s:enc:aesgcm:v1:",status="Unknown"\} 1/);
  assert.match(text, /apiserver_storage_transformation_operations_total\{transformation_type="from_storage",transformer_prefix="k8s:enc:kms:v2:",status="DeadlineExceeded"\} 1/);
  assert.match(text, /apiserver_storage_transformation_duration_seconds_count\{transformation_type="to_storage",transformer_prefix="k8s:enc:kms:v2:"\} 3/);
});

test('envelope metrics register once per registry and hash key_ids and the apiserver id', async () => {
  const registry = new Registry();
  const a = new KmsMetrics(registry, { apiServerId: 'apiserver-1', now: () => 5_000 });
  const b = new KmsMetrics(registry, { apiServerId: 'apiserver-1', now: () => 5_000 });
  a.keyIdUsed('from_storage', 'p', 'secret-key-id');
  b.keyIdUsed('from_storage', 'p', 'secret-key-id');
  a.invalidKeyIdFromStatus('p', 'too_long');
  a.arrival('to_storage');
  const text = await registry.metrics();
  assert.match(text, /apiserver_envelope_encryption_key_id_hash_total\{transformation_type="from_storage",provider_name="p",key_id_hash="sha256:[0-9a-f]{64}",apiserver_id_hash="sha256:[0-9a-f]{64}"\} 2/);
  assert.match(text, /apiserver_envelope_encryption_key_id_hash_last_timestamp_seconds\{[^}]*\} 5/);
  assert.match(text, /apiserver_envelope_encryption_invalid_key_id_from_status_total\{provider_name="p",error="too_long"\} 1/);
  assert.match(text, /apiserver_envelope_encryption_dek_cache_inter_arrival_time_seconds_count\{transformation_type="to_storage"\} 1/);
  assert.ok(!text.includes('secret-key-id') && !text.includes('apiserver-1"'));
});
