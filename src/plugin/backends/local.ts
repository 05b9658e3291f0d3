// The local KEK backend (`--backend local --key-file FILE`, the embedded default): AES-256 KEK
// versions in a 0600 JSON key file (src/plugin/local/key-file.ts), DEKs and seeds wrapped with
// AES-256-GCM under the newest version (src/plugin/local/ciphertext.ts), unwrapped with any.
import type { BackendModule } from '../backend.js';
import { keyFile, localFlags } from '../local/config.js';
import { appendKeyVersion, createKeyFile, keyIdOf, newVersion } from '../local/key-file.js';
import { LocalKek } from '../local/kek.js';


export const localBackend: BackendModule = {
  name: 'local',
  flags: localFlags,
  open: async (options, context) => LocalKek.open(keyFile(options), context.log),
  async initKey(options, context) {
    const path = keyFile(options);
    const first = newVersion(1);
    await createKeyFile(path, first);
    first.key.fill(0);
    const keyId = keyIdOf(first);
    context.log.info({ event: 'key-created', keyFile: path, version: 1, keyId }, 'local KEK version 1 created');
    return keyId;
  },
  async rotateKey(options, context) {
    const path = keyFile(options);
    const added = await appendKeyVersion(path, (current) => newVersion(Math.max(...current.versions.map((v) => v.version)) + 1));
    added.key.fill(0);
    const keyId = keyIdOf(added);
    context.log.info({ event: 'key-rotated', keyFile: path, version: added.version, keyId }, 'local KEK version added; running plugins switch to it on their next refresh');
    return keyId;
  },
};
