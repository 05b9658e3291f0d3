// In-process KMS services for pure transformer tests and fault injection: they count calls and can
// be told to fail, change key_id, or return bad responses. The wrapping is real AES-GCM under a
// random KEK so a wrong ciphertext fails like a real plugin's would. Real-socket tests use the
// independent python plugin (test/helpers/python-kms-plugin.ts) instead.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { registerTestSecretSoon } from './test-log.js';
import type { KmsV1Service, KmsV2DecryptRequest, KmsV2EncryptResponse, KmsV2Service, KmsV2StatusResponse } from '../../src/kms/service.js';

function wrap(kek: Buffer, plain: Uint8Array): Buffer {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek, nonce);
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([nonce, ct, c.getAuthTag()]);
}

function unwrap(kek: Buffer, cipher: Uint8Array): Buffer {
  const b = Buffer.from(cipher);
  if (b.length < 28) throw new Error('ciphertext too short');
  const d = createDecipheriv('aes-256-gcm', kek, b.subarray(0, 12));
  d.setAuthTag(b.subarray(b.length - 16));
  return Buffer.concat([d.update(b.subarray(12, b.length - 16)), d.final()]);
}

export class FakeKmsV1 implements KmsV1Service {
  calls = { encrypt: 0, decrypt: 0 };
  fail: Error | undefined;
  private readonly kek = randomBytes(32);

  async encrypt(plain: Uint8Array): Promise<Uint8Array> {
    this.calls.encrypt++;
    registerTestSecretSoon(plain, 'dek');
    if (this.fail) throw this.fail;
    return wrap(this.kek, plain);
  }

  async decrypt(cipher: Uint8Array): Promise<Uint8Array> {
    this.calls.decrypt++;
    if (this.fail) throw this.fail;
    return unwrap(this.kek, cipher);
  }
}

/** kube-apiserver's own test mock: the "EDEK" is the base64 text of the DEK (vectors.json `derived`). */
export class Base64KmsV1 implements KmsV1Service {
  calls = { encrypt: 0, decrypt: 0 };
  async encrypt(plain: Uint8Array): Promise<Uint8Array> {
    this.calls.encrypt++;
    registerTestSecretSoon(plain, 'dek');
    return Buffer.from(Buffer.from(plain).toString('base64'), 'ascii');
  }
  async decrypt(cipher: Uint8Array): Promise<Uint8Array> {
    this.calls.decrypt++;
    return Buffer.from(Buffer.from(cipher).toString('ascii'), 'base64');
  }
}

export class FakeKmsV2 implements KmsV2Service {
  calls = { status: 0, encrypt: 0, decrypt: 0 };
  uids: string[] = [];
  keyId = 'key-1';
  version = 'v2';
  healthz = 'ok';
  fail: Error | undefined;
  /** Overrides applied to Encrypt responses (bad-response injection). */
  encryptOverride: Partial<KmsV2EncryptResponse> | undefined;
  annotations: Record<string, Uint8Array> = {};
  private readonly keks = new Map<string, Buffer>();

  private kek(keyId: string): Buffer {
    let k = this.keks.get(keyId);
    if (!k) {
      k = randomBytes(32);
      this.keks.set(keyId, k);
    }
    return k;
  }

  async status(): Promise<KmsV2StatusResponse> {
    this.calls.status++;
    if (this.fail) throw this.fail;
    return { version: this.version, healthz: this.healthz, keyId: this.keyId };
  }

  async encrypt(uid: string, plaintext: Uint8Array): Promise<KmsV2EncryptResponse> {
    this.calls.encrypt++;
    registerTestSecretSoon(plaintext, 'dek-seed');
    this.uids.push(uid);
    if (this.fail) throw this.fail;
    return { ciphertext: wrap(this.kek(this.keyId), plaintext), keyId: this.keyId, annotations: this.annotations, ...this.encryptOverride };
  }

  async decrypt(uid: string, request: KmsV2DecryptRequest): Promise<Uint8Array> {
    this.calls.decrypt++;
    this.uids.push(uid);
    if (this.fail) throw this.fail;
    return unwrap(this.kek(request.keyId), request.ciphertext);
  }
}
