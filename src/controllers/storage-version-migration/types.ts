// What the StorageVersionMigration controller needs from the server, as small interfaces it owns:
// the StorageVersionMigration objects (implemented by src/api over the same ObjectRepository and
// validation as the REST handlers) and the raw store with the transformers of the server's current
// encryption configuration (what `atrest rewrite` uses). The controller never calls the HTTP API.
import type { GroupResource } from '../../config/types.js';
import type { KubeObject } from '../../k8s-objects/object-model.js';
import type { Logger } from '../../log.js';
import type { Registry } from '../../metrics.js';
import type { Store, Watch } from '../../storage/types.js';
import type { TransformerSet } from '../../transform/types.js';
import type { LeaderElectionTimings } from '../leader-election.js';
import type { EncryptedStore } from '../../storage/encrypted-store.js';

export type MigrationEvent = { type: 'put'; obj: KubeObject } | { type: 'delete'; name: string };

/** The StorageVersionMigration objects. */
export interface MigrationObjects {
  /** Every object, with the revision the list was read at. */
  list(): Promise<{ items: KubeObject[]; revision: number }>;
  get(name: string): Promise<KubeObject | undefined>;
  /**
   * Read, `mutate` (status and annotations only), validate as a status update, compare-and-swap;
   * again on a conflict. Undefined when the object is gone or is another one now (its uid is not `uid`).
   */
  update(name: string, uid: string, mutate: (obj: KubeObject) => void): Promise<KubeObject | undefined>;
  /** Changes after `afterRevision`; onError ends the watch (the controller lists again). */
  watch(afterRevision: number, handlers: { onEvent(e: MigrationEvent): void; onError(err: Error): void }): Watch;
}

export interface MigrationControllerOptions {
  objects: MigrationObjects;
  /** The raw store the objects of every resource are in. */
  store: Store;
  /** The same store through the transformers: the Lease is written through it. */
  encryptedStore: EncryptedStore;
  /** The transformers of the server's current encryption configuration (they change on reload). */
  transformers: TransformerSet;
  etcdPrefix: string;
  /** Whether this server serves (so stores) the resource; others fail as kube's "unable to obtain GVR from discovery". */
  serves(gr: GroupResource): boolean;
  log: Logger;
  registry: Registry;
  /** Values listed and written per batch (default 500). */
  batchSize?: number;
  /** Writes per second of one migration (0 or absent: unlimited). */
  rate?: number;
  /** Leader election (kube-controller-manager's --leader-elect-*); `false`: run without a lease (one replica only). */
  leaderElection: LeaderElectionTimings | false;
  /** The Lease's holderIdentity (default `<hostname>_<uuid>`). */
  identity?: string;
  now?: () => number;
}
