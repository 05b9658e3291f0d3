// The pkcs11 KEK backend: the key-encryption key is a non-extractable AES-256 key object inside an
// HSM (any PKCS#11 module; tested with SoftHSM2), and DEKs/seeds are wrapped inside the HSM.
// The pieces live in src/plugin/pkcs11/: flags and PIN file (config), module loading (library),
// sessions and login (token, session-pool), key objects (key-objects), ciphertext layout
// (ciphertext), serving (kek) and init-key/rotate-key (admin).
import { basename } from 'node:path';
import type { BackendContext, BackendModule, BackendOptions, KekBackend } from '../backend.js';
import { readHierarchySettings } from '../hierarchy/config.js';
import { createKeyVersion, type KeyVersionAction } from '../pkcs11/admin.js';
import { loadPkcs11Config, pkcs11Flags } from '../pkcs11/config.js';
import { Pkcs11Kek } from '../pkcs11/kek.js';
import { processPkcs11Loader, type Pkcs11Loader } from '../pkcs11/library.js';

/** `--backend pkcs11` with its own module loader (tests); the CLI uses `pkcs11Backend`. */
export function createPkcs11Backend(loader: Pkcs11Loader = processPkcs11Loader): BackendModule {
  async function keyVersion(options: BackendOptions, context: BackendContext, action: KeyVersionAction): Promise<string> {
    const config = await loadPkcs11Config(options);
    const library = await loader.acquire(config.modulePath);
    try {
      return createKeyVersion(library, config, action, context.log);
    } finally {
      library.release();
    }
  }
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
