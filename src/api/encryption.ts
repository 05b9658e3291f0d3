// The encryption side of the server: one "generation" = the transformers built from one
// EncryptionConfiguration file plus the KMS providers they use. EncryptionState holds the current
// generation and swaps it atomically on reload: every read and write asks it for the transformer
// of its key at that moment, so in-flight work finishes on the generation it started with.
import type { KmsIntervals, KmsProviders } from '../kms/factory.js';
import { createKmsProviders } from '../kms/factory.js';
import { loadEncryptionConfigFile } from '../config/load.js';
import type { HealthCheck } from '../health.js';
import type { Logger } from '../log.js';
import type { Registry } from '../metrics.js';
import { parseStorageKey } from '../storage/keys.js';
import { buildTransformers } from '../transform/build.js';
import { IdentityTransformer } from '../transform/identity.js';
import type { Transformer, TransformerSet } from '../transform/types.js';

export interface EncryptionGeneration {
  transformers: TransformerSet;
  kms?: KmsProviders;
  /** `sha256:<hex>` of the config file (undefined without a file). */
  contentHash?: string;
  path?: string;
}

export interface LoadEncryptionOptions {
  reload: boolean;
  metrics: Registry;
  log: Logger;
  kmsIntervals?: Partial<KmsIntervals>;
  apiServerId?: string;
}

/** Everything identity: no --encryption-provider-config. */
export function identityGeneration(): EncryptionGeneration {
  const identity = new IdentityTransformer({ nameStorageKey: true });
  return { transformers: { forResource: () => identity, close: async () => {} } };
}

/** Loads, validates and builds one generation; throws ConfigError / transformer errors, leaving nothing open. */
export async function loadEncryptionGeneration(path: string, options: LoadEncryptionOptions): Promise<EncryptionGeneration> {
  const loaded = await loadEncryptionConfigFile(path, { reload: options.reload });
  const kms = createKmsProviders({
    metrics: options.metrics,
    log: options.log,
    reload: options.reload,
    ...(options.kmsIntervals ? { intervals: options.kmsIntervals } : {}),
    ...(options.apiServerId ? { apiServerId: options.apiServerId } : {}),
  });
  try {
    const transformers = buildTransformers(loaded.config, { kms: kms.factory });
    return { transformers, kms, contentHash: loaded.contentHash, path };
  } catch (err) {
    await kms.close();
    throw err;
  }
}

export async function closeGeneration(gen: EncryptionGeneration): Promise<void> {
  await gen.transformers.close();
  await gen.kms?.close();
}

export class EncryptionState {
  private gen: EncryptionGeneration;

  constructor(
    initial: EncryptionGeneration,
    private readonly etcdPrefix: string,
    /** Wraps each resource transformer (metrics); identity when absent. */
    private readonly wrap: (t: Transformer) => Transformer = (t) => t,
  ) {
    this.gen = initial;
  }

  get current(): EncryptionGeneration {
    return this.gen;
  }

  /** For EncryptedStore: the transformer of a storage key under the current generation. */
  readonly transformerFor = (key: string): Transformer => {
    return this.wrap(this.gen.transformers.forResource(parseStorageKey(this.etcdPrefix, key).groupResource));
  };

  /**
   * The resource transformers of whichever generation is current when each is asked for (bulk
   * re-encryption: a StorageVersionMigration). Closing it closes nothing: generations are closed here.
   */
  readonly transformers: TransformerSet = {
    forResource: (gr) => this.wrap(this.gen.transformers.forResource(gr)),
    close: async () => {},
  };

  /** The current KMS health checks (kube's names), for /healthz and /readyz. */
  healthChecks(): HealthCheck[] {
    return this.gen.kms?.healthChecks() ?? [];
  }

  /** Installs `next`; returns the generation it replaced (the caller closes it after a grace period). */
  swap(next: EncryptionGeneration): EncryptionGeneration {
    const old = this.gen;
    this.gen = next;
    return old;
  }
}
