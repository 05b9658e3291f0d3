// Helpers for the key-hierarchy tests against the real remote backends (hierarchy-kmip.test.ts,
// hierarchy-pkcs11.test.ts): a steady kms v1 + v2 load on a plugin socket that counts answers, and
// the "values written before the hierarchy" fixtures (test/fixtures/hierarchy, made by its
// make-fixtures.ts with the code as it was before).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TestKmsClient } from './plugin.js';
import { registerTestSecret } from './test-log.js';

export interface LoadCounts {
  /** Encrypt+Decrypt pairs that round-tripped, per API. */
  v1: number;
  v2: number;
  /** Failed calls (message), and answers that held their plaintext. */
  failures: string[];
  plaintextInCiphertext: number;
}

/** Two loops (kms v1 and v2) of Encrypt then Decrypt of the fresh value until stop(). */
export function startLoad(client: TestKmsClient): { counts: LoadCounts; stop(): Promise<LoadCounts> } {
  const counts: LoadCounts = { v1: 0, v2: 0, failures: [], plaintextInCiphertext: 0 };
  let running = true;
  const loop = async (api: 'v1' | 'v2'): Promise<void> => {
    while (running) {
      const dek = randomBytes(32);
      try {
        if (api === 'v2') {
          const w = await client.encrypt(dek);
          if (Buffer.from(w.ciphertext).includes(dek)) counts.plaintextInCiphertext++;
          const back = await client.decrypt(w.ciphertext, w.keyId, 'v2', w.annotations);
          assert.deepEqual(Buffer.from(back.plaintext), dek);
        } else {
          const w = await client.v1Encrypt(dek);
          if (Buffer.from(w.cipher).includes(dek)) counts.plaintextInCiphertext++;
          assert.deepEqual(Buffer.from((await client.v1Decrypt(w.cipher)).plain), dek);
        }
        counts[api]++;
      } catch (err) {
        counts.failures.push(`${api}: ${err instanceof Error ? err.message : String(err)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  const done = Promise.all([loop('v1'), loop('v2')]);
  return { counts, stop: async () => { running = false; await done; return counts; } };
}

export interface FixtureValue { api: 'v1beta1' | 'v2'; plaintext: string; ciphertext: string; keyId?: string }
export interface HierarchyFixture { keyIds: string[]; values: FixtureValue[] }

/** test/fixtures/hierarchy/<backend>/values.json, its plaintexts registered as test secrets. */
export function loadFixture<T extends HierarchyFixture>(backend: 'kmip' | 'pkcs11'): T & { dir: string } {
  const dir = fileURLToPath(new URL(`../fixtures/hierarchy/${backend}/`, import.meta.url));
  const fixture = JSON.parse(readFileSync(`${dir}values.json`, 'utf8')) as T;
  for (const v of fixture.values) registerTestSecret(Buffer.from(v.plaintext, 'base64'), 'fixture-dek');
  return { ...fixture, dir };
}

/** Asserts every fixture value decrypts to its plaintext through the plugin socket. */
export async function assertFixtureDecrypts(client: TestKmsClient, fixture: HierarchyFixture): Promise<void> {
  for (const v of fixture.values) {
    const ct = Buffer.from(v.ciphertext, 'base64');
    const plain = v.api === 'v2' ? (await client.decrypt(ct, v.keyId!)).plaintext : (await client.v1Decrypt(ct)).plain;
    assert.equal(Buffer.from(plain).toString('base64'), v.plaintext, `${v.api} value under ${v.keyId ?? 'v1'}`);
  }
}

/** A sample of a Prometheus text exposition (name with labels as written), or undefined. */
export function sample(text: string, nameWithLabels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${nameWithLabels} `));
  return line === undefined ? undefined : Number(line.slice(nameWithLabels.length + 1));
}
