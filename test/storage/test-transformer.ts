// An aesgcm-like transformer for storage tests (the engine's providers are tested in test/transform):
// `k8s:enc:aesgcm:v1:<name>:` + nonce(12) + ciphertext + tag(16), the storage key as AAD. It writes
// with its first key and reads with any of its keys (reads with a later key are stale).
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { AtrestError } from '../../src/errors.js';
import type { Transformer, TransformResult } from '../../src/transform/types.js';

export class TestTransformError extends AtrestError {
  constructor(message: string) {
    super('TRANSFORM_FAILED', message);
  }
}

export class TestGcmTransformer implements Transformer {
  /** Set to make toStorage throw (fail-closed tests). */
  failWrites = false;

  constructor(private readonly keys: Array<{ name: string; key: Buffer }>) {}

  async toStorage(plaintext: Uint8Array, dataCtx: Uint8Array): Promise<Buffer> {
    if (this.failWrites) throw new TestTransformError('the test transformer refuses to encrypt');
    const { name, key } = this.keys[0] as { name: string; key: Buffer };
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key, nonce);
    c.setAAD(dataCtx);
    const ct = Buffer.concat([c.update(plaintext), c.final()]);
    return Buffer.concat([Buffer.from(`k8s:enc:aesgcm:v1:${name}:`), nonce, ct, c.getAuthTag()]);
  }

  async fromStorage(stored: Uint8Array, dataCtx: Uint8Array): Promise<TransformResult> {
    const buf = Buffer.from(stored);
    for (const [i, { name, key }] of this.keys.entries()) {
      const prefix = Buffer.from(`k8s:enc:aesgcm:v1:${name}:`);
      if (!buf.subarray(0, prefix.length).equals(prefix)) continue;
      const body = buf.subarray(prefix.length);
      if (body.length < 28) throw new TestTransformError(`value too short for key ${name}`);
      const d = createDecipheriv('aes-256-gcm', key, body.subarray(0, 12));
      d.setAAD(dataCtx);
      d.setAuthTag(body.subarray(body.length - 16));
      try {
        const plaintext = Buffer.concat([d.update(body.subarray(12, body.length - 16)), d.final()]);
        return { plaintext, stale: i !== 0, origin: { provider: 'aesgcm', name } };
      } catch {
        throw new TestTransformError(`aesgcm key ${name}: authentication failed`);
      }
    }
    throw new TestTransformError('no key matches the stored value prefix');
  }
}
