// Loading a PKCS#11 module (the vendor's .so) and calling C_Initialize on it.
//
// A PKCS#11 library's initialised state belongs to the whole process: dlopen hands every caller
// the same copy, a second C_Initialize fails with CKR_CRYPTOKI_ALREADY_INITIALIZED, and one
// C_Finalize ends every user's sessions. So loaded libraries are reference-counted by real path in
// a loader; the process shares one loader (`processPkcs11Loader`) because the thing it models is
// per process. pkcs11js (a native addon) is imported lazily so the other backends work without it.
import { realpath, stat } from 'node:fs/promises';
import type * as Pkcs11Js from 'pkcs11js';
import { BackendError } from '../backend.js';
import { CKR, ckrOf, describePkcs11Error } from './ckr.js';

export type Pkcs11Namespace = typeof Pkcs11Js;
export type Pkcs11Api = Pkcs11Js.PKCS11;
export type Handle = Buffer;

export interface Pkcs11Library {
  /** Real path of the module. */
  readonly path: string;
  /** The PKCS#11 functions (C_*). */
  readonly api: Pkcs11Api;
  /** pkcs11js constants (CKA_*, CKM_*, ...). */
  readonly k: Pkcs11Namespace;
  /** False when the module refused CKF_OS_LOCKING_OK: callers must then use one session at a time. */
  readonly threadSafe: boolean;
  /** Drops this reference; the last one calls C_Finalize and unloads the module. */
  release(): void;
}

interface Loaded {
  api: Pkcs11Api;
  k: Pkcs11Namespace;
  threadSafe: boolean;
  /** False when someone outside this loader had initialised the module: then we never finalise it. */
  ownsInit: boolean;
  refs: number;
}

export class Pkcs11Loader {
  private readonly loaded = new Map<string, Promise<Loaded>>();

  /** Loads and initialises the module at `modulePath` (or shares the already loaded one). */
  async acquire(modulePath: string): Promise<Pkcs11Library> {
    const path = await resolveModulePath(modulePath);
    let pending: Promise<Loaded>;
    let entry: Loaded;
    // Loop: the last holder may finalise the module while we wait for a shared load.
    for (;;) {
      const existing = this.loaded.get(path);
      const current = existing ?? load(path);
      if (!existing) {
        this.loaded.set(path, current);
        current.catch(() => {
          if (this.loaded.get(path) === current) this.loaded.delete(path);
        });
      }
      pending = current;
      entry = await current;
      if (this.loaded.get(path) === pending) break;
    }
    entry.refs++;
    let released = false;
    return {
      path,
      api: entry.api,
      k: entry.k,
      threadSafe: entry.threadSafe,
      release: () => {
        if (released) return;
        released = true;
        entry.refs--;
        if (entry.refs === 0 && this.loaded.get(path) === pending) {
          this.loaded.delete(path);
          if (!entry.ownsInit) return;
          try {
            entry.api.C_Finalize();
          } catch {
            // Already finalised or the device is gone: nothing left to release.
          }
          try {
            entry.api.close();
          } catch {
            // dlclose failure leaves the module mapped; harmless.
          }
        }
      },
    };
  }
}

/** The loader shared by everything in this process (see the file comment for why it is shared). */
export const processPkcs11Loader = new Pkcs11Loader();

async function resolveModulePath(modulePath: string): Promise<string> {
  try {
    const path = await realpath(modulePath);
    if (!(await stat(path)).isFile()) throw new Error('not a regular file');
    return path;
  } catch (err) {
    throw new BackendError('CONFIG', `--pkcs11-module ${modulePath}: cannot use the PKCS#11 module (${(err as Error).message})`, { cause: err });
  }
}

async function importPkcs11js(): Promise<Pkcs11Namespace> {
  try {
    const mod = (await import('pkcs11js')) as Pkcs11Namespace & { default?: Pkcs11Namespace };
    return mod.default ?? mod;
  } catch (err) {
    throw new BackendError('CONFIG', `the pkcs11 backend needs the pkcs11js native addon, which failed to load: ${(err as Error).message}`, { cause: err });
  }
}

async function load(path: string): Promise<Loaded> {
  const k = await importPkcs11js();
  const api = new k.PKCS11();
  try {
    api.load(path);
  } catch (err) {
    throw new BackendError('CONFIG', `--pkcs11-module ${path}: not a loadable PKCS#11 module (${describePkcs11Error(err)})`, { cause: err });
  }
  let threadSafe = true;
  let ownsInit = true;
  try {
    api.C_Initialize({ flags: k.CKF_OS_LOCKING_OK });
  } catch (err) {
    const code = ckrOf(err);
    if (code === CKR.CRYPTOKI_ALREADY_INITIALIZED) {
      // Someone else in this process (outside this loader) initialised it; share their state.
      ownsInit = false;
    } else if (code === CKR.CANT_LOCK) {
      threadSafe = false;
      try {
        api.C_Initialize();
      } catch (err2) {
        if (ckrOf(err2) !== CKR.CRYPTOKI_ALREADY_INITIALIZED) throw initFailed(path, err2);
        ownsInit = false;
      }
    } else {
      try {
        api.close();
      } catch {
        // ignore: reporting the C_Initialize failure matters more
      }
      throw initFailed(path, err);
    }
  }
  return { api, k, threadSafe, ownsInit, refs: 0 };
}

function initFailed(path: string, err: unknown): BackendError {
  return new BackendError('UNAVAILABLE', `PKCS#11 module ${path}: C_Initialize failed (${describePkcs11Error(err)})`, { cause: err });
}
