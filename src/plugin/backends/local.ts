// The local KEK backend (`--backend local --key-file FILE`, the embedded default): AES-256 KEK
// versions in a 0600 JSON key file (src/plugin/local/key-file.ts), DEKs and seeds wrapped with
// AES-256-GCM under the newest version (src/plugin/local/ciphertext.ts), unwrapped with any that
// is not retired (src/plugin/local/retirement.ts). With --rotation-period the serving plugin
// rotates on a schedule (src/plugin/local/rotation-schedule.ts).
import { access, constants } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BackendError, type BackendModule } from '../backend.js';
import { keyFile, localFlags, retirementGraceMs, rotationPeriodMs } from '../local/config.js';
import { appendKeyVersion, createKeyFile, keyIdOf, newVersion } from '../local/key-file.js';
import { LocalKek, localRestoreCommand } from '../local/kek.js';
import { listKeyFileVersions, restoreKeyFileVersion, retireKeyFileVersion } from '../local/retirement.js';
import { startRotationSchedule } from '../local/rotation-schedule.js';

export const localBackend: BackendModule = {
  name: 'local',
  flags: localFlags,
  async open(options, context) {
    const path = keyFile(options);
    const periodMs = rotationPeriodMs(options);
    if (periodMs !== undefined) {
      // Rotating rewrites the file through a temporary file beside it: fail now, not in a month.
      await access(dirname(path), constants.W_OK).catch((err: unknown) => {
        throw new BackendError('CONFIG', `--rotation-period: the directory of key file ${path} is not writable (${(err as NodeJS.ErrnoException).code ?? 'error'}); the plugin rewrites the file to rotate`);
      });
    }
    const kek = await LocalKek.open(path, context.log);
    if (periodMs !== undefined) {
      const schedule = startRotationSchedule({ path, periodMs, kek, log: context.log, ...(context.metrics ? { metrics: context.metrics } : {}) });
      kek.onClose(() => schedule.stop());
      context.log.info({ event: 'rotation-schedule', keyFile: path, periodMs }, 'scheduled KEK rotation on');
    }
    return kek;
  },
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
  listKeys: async (options) => listKeyFileVersions(keyFile(options)),
  async retireKey(options, context, keyId) {
    const path = keyFile(options);
    const info = await retireKeyFileVersion(path, keyId, retirementGraceMs(options));
    context.log.info({ event: 'key-retired', keyFile: path, keyId, purgeAfter: new Date(info.purgeAfter ?? 0).toISOString() }, 'local KEK version retired; running plugins stop unwrapping with it on their next refresh');
    return info;
  },
  async restoreKey(options, context, keyId) {
    const path = keyFile(options);
    const info = await restoreKeyFileVersion(path, keyId);
    context.log.info({ event: 'key-restored', keyFile: path, keyId }, 'local KEK version restored; running plugins unwrap with it again on their next refresh');
    return info;
  },
  restoreCommand: (options, keyId) => localRestoreCommand(keyFile(options), keyId),
};
