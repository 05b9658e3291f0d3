// The kmip KEK backend: the key-encryption key lives on a KMIP server (OASIS KMIP 1.x over mutual
// TLS); DEKs are wrapped and unwrapped there by server-side Encrypt/Decrypt. The client, the
// ciphertext format and the key-version handling live in src/plugin/kmip/. Retiring a version
// revokes it (final in KMIP: no restore-key; src/plugin/kmip/retirement.ts).
import { BackendError, type BackendModule } from '../backend.js';
import { kmipFlags, readKmipSettings } from '../kmip/config.js';
import { KmipKek, createVersion, keyIdOf, listVersions, newKmipClient, toBackendError } from '../kmip/kek.js';
import { listKmipVersions, retireKmipVersion } from '../kmip/retirement.js';

export const kmipBackend: BackendModule = {
  name: 'kmip',
  flags: kmipFlags,

  async open(options, context) {
    return KmipKek.open(await readKmipSettings(options), context);
  },

  describeRemote: (options) => `KMIP server ${options['kmipEndpoint'] ?? '(no --kmip-endpoint)'}, key ${JSON.stringify(options['kmipKeyName'] ?? '')}`,

  async initKey(options, context) {
    const s = await readKmipSettings(options);
    const client = newKmipClient(s, context.metrics);
    try {
      const existing = await listVersions(client, s.keyName);
      if (existing.length > 0) {
        throw new BackendError('CONFIG', `--kmip-key-name: KMIP key ${JSON.stringify(s.keyName)} already exists (v${existing.map((v) => v.version).join(', v')}); use rotate-key to add a version`);
      }
      const v = await createVersion(client, s.keyName, 1);
      context.log.info({ keyName: s.keyName, version: 1 }, 'kmip backend: created key version');
      return keyIdOf(s.keyName, v);
    } catch (e) {
      throw toBackendError(e, `KMIP key ${JSON.stringify(s.keyName)}`);
    } finally {
      client.close();
    }
  },

  async rotateKey(options, context) {
    const s = await readKmipSettings(options);
    const client = newKmipClient(s, context.metrics);
    try {
      const existing = await listVersions(client, s.keyName);
      const newest = existing[existing.length - 1];
      if (!newest) {
        throw new BackendError('KEY_NOT_FOUND', `--kmip-key-name: no KMIP key ${JSON.stringify(s.keyName)}; create it with init-key first`);
      }
      const v = await createVersion(client, s.keyName, newest.version + 1);
      context.log.info({ keyName: s.keyName, version: v.version }, 'kmip backend: created key version');
      return keyIdOf(s.keyName, v);
    } catch (e) {
      throw toBackendError(e, `KMIP key ${JSON.stringify(s.keyName)}`);
    } finally {
      client.close();
    }
  },
  listKeys: async (options, context) => listKmipVersions(await readKmipSettings(options), context),
  retireKey: async (options, context, keyId) => retireKmipVersion(await readKmipSettings(options), context, keyId),
};
