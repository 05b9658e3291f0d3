// The pkcs11 KEK backend: the key-encryption key is a non-extractable AES-256 key object inside an
// HSM (any PKCS#11 module; tested with SoftHSM2), and DEKs/seeds are wrapped inside the HSM.
// The pieces live in src/plugin/pkcs11/: flags and PIN file (config), module loading (library),
// sessions and login (token, session-pool), key objects (key-objects), ciphertext layout
// (ciphertext), serving (kek), init-key/rotate-key (admin) and list/retire/restore of versions
// (retirement).
import { basename } from 'node:path';
import type { BackendContext, BackendModule, BackendOptions, KekBackend } from '../backend.js';
import { readHierarchySettings } from '../hierarchy/config.js';
import { createKeyVersion, type KeyVersionAction } from '../pkcs11/admin.js';
import { loadPkcs11Config, pkcs11Flags, type Pkcs11Config } from '../pkcs11/config.js';
import { Pkcs11Kek } from '../pkcs11/kek.js';
import { processPkcs11Loader, type Pkcs11Library, type Pkcs11Loader } from '../pkcs11/library.js';
import { listPkcs11Versions, restorePkcs11Version, retirePkcs11Version } from '../pkcs11/retirement.js';
import { pkcs11RestoreCommand } from '../pkcs11/usability.js';

/** `--backend pkcs11` with its own module loader (tests); the CLI uses `pkcs11Backend`. */
export function createPkcs11Backend(loader: Pkcs11Loader = processPkcs11Loader): BackendModule {
  async function withLibrary<T>(options: BackendOptions, fn: (library: Pkcs11Library, config: Pkcs11Config) => T): Promise<T> {
    const config = await loadPkcs11Config(options);
    const library = await loader.acquire(config.modulePath);
    try {
      return fn(library, config);
    } finally {
      library.release();
    }
  }
  const keyVersion = (options: BackendOptions, context: BackendContext, action: KeyVersionAction): Promise<string> =>
    withLibrary(options, (library, config) => createKeyVersion(library, config, action, context.log));
  return {
    name: 'pkcs11',
    flags: pkcs11Flags,
    async open(options: BackendOptions, context: BackendContext): Promise<KekBackend> {
      const config = await loadPkcs11Config(options);
      if (config.callMode === 'thread') {
        // Opening and, later, a call that hangs are bounded by the key hierarchy's remote timeout.
        const { ThreadedPkcs11Kek } = await import('../pkcs11/thread-host.js');
        return ThreadedPkcs11Kek.open(config, context.log, readHierarchySettings(options).remoteTimeoutMs);
      }
      const library = await loader.acquire(config.modulePath);
      return Pkcs11Kek.open({ config, library, log: context.log });
    },
    describeRemote,
    initKey: (options, context) => keyVersion(options, context, 'init'),
    rotateKey: (options, context) => keyVersion(options, context, 'rotate'),
    listKeys: (options) => withLibrary(options, (library, config) => listPkcs11Versions(library, config)),
    retireKey: (options, context, keyId) => withLibrary(options, (library, config) => retirePkcs11Version(library, config, keyId, context.log)),
    restoreKey: (options, context, keyId) => withLibrary(options, (library, config) => restorePkcs11Version(library, config, keyId, context.log)),
    restoreCommand: (options, keyId) => pkcs11RestoreCommand({
      modulePath: options['pkcs11Module'] ?? '<module>', tokenLabel: options['pkcs11TokenLabel'] ?? '<token>', keyLabel: options['pkcs11KeyLabel'] ?? '<key label>',
      ...(options['pkcs11PinFile'] ? { pinFile: options['pkcs11PinFile'] } : {}),
    }, keyId),
  };
}

/**
 * Names the remote for logs, errors and /healthz: token, module and key label; with p11-kit's client
 * module (a token exported by `p11-kit server`) also the server address it dials.
 */
function describeRemote(options: BackendOptions): string {
  const module = options['pkcs11Module'] ?? '?';
  const server = basename(module) === 'p11-kit-client.so' ? process.env['P11_KIT_SERVER_ADDRESS'] : undefined;
  return `PKCS#11 token ${JSON.stringify(options['pkcs11TokenLabel'] ?? '')} (module ${module}${server ? `, P11_KIT_SERVER_ADDRESS ${server}` : ''}), key ${JSON.stringify(options['pkcs11KeyLabel'] ?? '')}`;
}

export const pkcs11Backend: BackendModule = createPkcs11Backend();
