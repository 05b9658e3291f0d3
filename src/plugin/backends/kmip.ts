// The kmip KEK backend. (Placeholder until the backend lands: every call fails with a clear error.)
import { BackendError, type BackendModule } from '../backend.js';

const notBuilt = (): never => {
  throw new BackendError('CONFIG', 'the kmip backend is not available in this build');
};

export const kmipBackend: BackendModule = {
  name: 'kmip',
  flags: [],
  open: async () => notBuilt(),
  initKey: async () => notBuilt(),
  rotateKey: async () => notBuilt(),
};
