// The pkcs11 KEK backend. (Placeholder until the backend lands: every call fails with a clear error.)
import { BackendError, type BackendModule } from '../backend.js';

const notBuilt = (): never => {
  throw new BackendError('CONFIG', 'the pkcs11 backend is not available in this build');
};

export const pkcs11Backend: BackendModule = {
  name: 'pkcs11',
  flags: [],
  open: async () => notBuilt(),
  initKey: async () => notBuilt(),
  rotateKey: async () => notBuilt(),
};
