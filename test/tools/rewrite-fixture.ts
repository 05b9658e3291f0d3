// Shared setup of the `atrest rewrite` tests: a real KMS plugin (local backend) on a UNIX socket in
// this process, the aescbc → kms v2 migration configs, and secrets written with the old config.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseEncryptionConfig } from '../../src/config/load.js';
import { createKmsProviders, type KmsProviders } from '../../src/kms/factory.js';
import { localBackend } from '../../src/plugin/backends/local.js';
import { startPluginServer, type PluginServer } from '../../src/plugin/server.js';
import type { Store } from '../../src/storage/types.js';
import { buildTransformers } from '../../src/transform/build.js';
import type { Transformer, TransformerSet } from '../../src/transform/types.js';
import { inProcessLogger } from '../helpers/test-log.js';

export const KMS_NAME = 'rewrite-kms';
const AESCBC_KEY = Buffer.alloc(32, 7).toString('base64');
export const SECRETS = { group: '', resource: 'secrets' };
export const CONFIGMAPS = { group: '', resource: 'configmaps' };

/** Before the migration: aescbc writes secrets and configmaps. */
export const OLD_CONFIG = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
      - aescbc: { keys: [{ name: key1, secret: "${AESCBC_KEY}" }] }
      - identity: {}
`;

/** After: kms v2 writes, aescbc and identity still read. */
export function newConfig(socket: string): string {
  return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
      - kms: { apiVersion: v2, name: ${KMS_NAME}, endpoint: "unix://${socket}", timeout: 3s }
      - aescbc: { keys: [{ name: key1, secret: "${AESCBC_KEY}" }] }
      - identity: {}
`;
}

export function oldTransformer(resource = SECRETS): Transformer {
  return buildTransformers(parseEncryptionConfig(OLD_CONFIG, 'old.yaml').config).forResource(resource);
}

export interface LocalPlugin {
  socket: string;
  server: PluginServer;
  close(): Promise<void>;
}

/** `atrest kms-plugin --backend local` in this process, on `<dir>/kms.sock`. */
export async function startLocalPlugin(dir: string): Promise<LocalPlugin> {
  const ctx = { log: inProcessLogger('rewrite-fixture') };
  const keyFile = join(dir, 'kek.json');
  await localBackend.initKey({ keyFile }, ctx);
  const backend = await localBackend.open({ keyFile }, ctx);
  const socket = join(dir, 'kms.sock');
  const server = await startPluginServer({ listen: `unix://${socket}`, backend, log: inProcessLogger('kms-plugin') });
  return {
    socket,
    server,
    close: async () => {
      await server.close();
      await backend.close();
    },
  };
}

/** The new config's transformers, talking to the plugin over its socket. */
export async function newTransformers(socket: string): Promise<{ transformers: TransformerSet; kms: KmsProviders; close(): Promise<void> }> {
  const kms = createKmsProviders({ log: inProcessLogger('rewrite-fixture') });
  const transformers = buildTransformers(parseEncryptionConfig(newConfig(socket), 'new.yaml').config, { kms: kms.factory });
  await kms.ready();
  return { transformers, kms, close: () => kms.close() };
}

export async function writeConfigs(dir: string, socket: string): Promise<{ oldPath: string; newPath: string }> {
  const oldPath = join(dir, 'old.yaml');
  const newPath = join(dir, 'new.yaml');
  await writeFile(oldPath, OLD_CONFIG);
  await writeFile(newPath, newConfig(socket));
  return { oldPath, newPath };
}

export const SECRET_MARK = 'rewrite-secret-value-9c1e';

export function secretObject(name: string, value = `${SECRET_MARK}-${name}`): Buffer {
  return Buffer.from(JSON.stringify({ kind: 'Secret', apiVersion: 'v1', metadata: { name, namespace: 'default' }, data: { k: Buffer.from(value).toString('base64') } }));
}

export function secretKey(name: string, prefix = '/registry'): string {
  return `${prefix}/secrets/default/${name}`;
}

/** Creates `count` secrets s000.. written by aescbc (stale under the new config). Returns their keys. */
export async function seedOldSecrets(store: Store, count: number, prefix = '/registry'): Promise<string[]> {
  const t = oldTransformer();
  const keys: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `s${String(i).padStart(3, '0')}`;
    const key = secretKey(name, prefix);
    await store.create(key, await t.toStorage(secretObject(name), Buffer.from(key)));
    keys.push(key);
  }
  return keys;
}
