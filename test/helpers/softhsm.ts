// A throwaway SoftHSM2 installation for tests: a temp dir with softhsm2.conf and a token directory,
// tokens initialised with softhsm2-util, and a 0600 PIN file per token.
// SoftHSM reads SOFTHSM2_CONF at C_Initialize, so in-process users must call `createSoftHsm` (which
// sets process.env.SOFTHSM2_CONF) before the module is first loaded; child processes get `env`.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Debian's softhsm2 package puts the module here. */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsmToken {
  label: string;
  pin: string;
  soPin: string;
  /** 0600 file holding `pin` plus a newline. */
  pinFile: string;
}

export interface SoftHsm {
  dir: string;
  confPath: string;
  modulePath: string;
  /** Environment for child processes (SOFTHSM2_CONF). */
  env: Record<string, string>;
  /** The token created by createSoftHsm. */
  token: SoftHsmToken;
  /** Initialises another token in the same token directory. */
  addToken(label: string, pin?: string): Promise<SoftHsmToken>;
  /** Removes the temp dir and restores SOFTHSM2_CONF in process.env. */
  cleanup(): Promise<void>;
}

export function softHsmInstalled(): boolean {
  // In CI every dependency is installed by .ci/run: a missing one must fail the tests, not skip them.
  return process.env['CI'] === 'true' || existsSync(SOFTHSM_MODULE);
}

/**
 * `fromTokens`: a token directory to start from (copied; e.g. a fixture holding keys made earlier)
 * whose token is `tokenLabel` with user PIN `pin`, instead of initialising a new token.
 */
export async function createSoftHsm(options: { tokenLabel?: string; pin?: string; setProcessEnv?: boolean; fromTokens?: string } = {}): Promise<SoftHsm> {
  if (!softHsmInstalled()) {
    throw new Error(`SoftHSM2 is not installed (${SOFTHSM_MODULE} missing); run scripts/install-test-deps.sh`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'atrest-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  await mkdir(tokenDir, { mode: 0o700 });
  const confPath = join(dir, 'softhsm2.conf');
  await writeFile(confPath, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`, { mode: 0o600 });
  const env = { SOFTHSM2_CONF: confPath };
  const previous = process.env['SOFTHSM2_CONF'];
  if (options.setProcessEnv !== false) process.env['SOFTHSM2_CONF'] = confPath;

  let tokenCount = 0;
  const addToken = async (label: string, pin = '1234-user-pin'): Promise<SoftHsmToken> => {
    const soPin = 'so-pin-5678';
    await execFileAsync('softhsm2-util', ['--init-token', '--free', '--label', label, '--so-pin', soPin, '--pin', pin], {
      env: { ...process.env, ...env },
    });
    const pinFile = join(dir, `pin-${tokenCount++}`);
    await writeFile(pinFile, `${pin}\n`, { mode: 0o600 });
    await chmod(pinFile, 0o600); // in case a umask widened nothing but an existing file was reused
    return { label, pin, soPin, pinFile };
  };

  const existingToken = async (label: string, pin: string): Promise<SoftHsmToken> => {
    await cp(options.fromTokens!, tokenDir, { recursive: true });
    const pinFile = join(dir, `pin-${tokenCount++}`);
    await writeFile(pinFile, `${pin}\n`, { mode: 0o600 });
    return { label, pin, soPin: '', pinFile };
  };

  try {
    const token = options.fromTokens
      ? await existingToken(options.tokenLabel ?? 'atrest-test', options.pin ?? '1234-user-pin')
      : await addToken(options.tokenLabel ?? 'atrest-test', options.pin);
    return {
      dir,
      confPath,
      modulePath: SOFTHSM_MODULE,
      env,
      token,
      addToken,
      cleanup: async () => {
        if (options.setProcessEnv !== false) {
          if (previous === undefined) delete process.env['SOFTHSM2_CONF'];
          else process.env['SOFTHSM2_CONF'] = previous;
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
