// Wraps the resource transformers to record kube-apiserver's storage transformation metrics
// (apiserver_storage_transformation_operations_total / _duration_seconds, labelled by direction and
// the provider prefix: `k8s:enc:aesgcm:v1:`, `k8s:enc:kms:v2:<name>:`, `identity`).
import { createTransformationMetrics } from '../kms/metrics.js';
import type { Registry } from '../metrics.js';
import type { ReadOrigin, TransformResult, Transformer } from '../transform/types.js';

const STORED_PREFIX = /^k8s:enc:(?:kms:v[12]:[^:]{1,253}:|[a-z]+:v1:)/;

function prefixOfStored(stored: Uint8Array): string {
  const head = Buffer.from(stored.buffer, stored.byteOffset, Math.min(stored.byteLength, 300)).toString('latin1');
  return STORED_PREFIX.exec(head)?.[0] ?? 'identity';
}

function prefixOfOrigin(origin: ReadOrigin): string {
  if (origin.provider === 'identity') return 'identity';
  if (origin.provider === 'kms') return `k8s:enc:kms:${origin.kmsApiVersion ?? 'v1'}:${origin.name ?? ''}:`;
  return `k8s:enc:${origin.provider}:v1:`;
}

export function transformationRecorder(registry: Registry): (t: Transformer) => Transformer {
  const metrics = createTransformationMetrics(registry);
  const wrapped = new WeakMap<Transformer, Transformer>();
  return (inner) => {
    let w = wrapped.get(inner);
    if (w) return w;
    w = {
      async toStorage(plaintext, dataCtx): Promise<Buffer> {
        const start = process.hrtime.bigint();
        try {
          const out = await inner.toStorage(plaintext, dataCtx);
          metrics.record('to_storage', prefixOfStored(out), Number(process.hrtime.bigint() - start) / 1e9);
          return out;
        } catch (err) {
          metrics.record('to_storage', 'unknown', Number(process.hrtime.bigint() - start) / 1e9, err);
          throw err;
        }
      },
      async fromStorage(stored, dataCtx): Promise<TransformResult> {
        const start = process.hrtime.bigint();
        try {
          const out = await inner.fromStorage(stored, dataCtx);
          metrics.record('from_storage', prefixOfOrigin(out.origin), Number(process.hrtime.bigint() - start) / 1e9);
          return out;
        } catch (err) {
          metrics.record('from_storage', prefixOfStored(stored), Number(process.hrtime.bigint() - start) / 1e9, err);
          throw err;
        }
      },
    };
    wrapped.set(inner, w);
    return w;
  };
}
