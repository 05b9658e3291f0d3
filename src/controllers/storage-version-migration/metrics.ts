// Prometheus metrics of the StorageVersionMigration controller (kube has none for it, so atrest_):
// objects handled by outcome (their rate is the progress), migrations running, migrations finished.
import { Counter, Gauge } from 'prom-client';
import type { Registry } from '../../metrics.js';
import type { MigrationCounts } from './progress.js';

export interface MigrationMetrics {
  /** Adds the counts of one batch (a delta) for `resource`. */
  objects(resource: string, delta: MigrationCounts): void;
  running(resource: string, delta: 1 | -1): void;
  finished(resource: string, result: 'succeeded' | 'failed'): void;
}

/** The `outcome` label of each count (a Record, so a new count cannot be left without one). */
const OUTCOMES: Record<keyof MigrationCounts, string> = {
  scanned: 'scanned', rewritten: 'rewritten', alreadyCurrent: 'already_current', deletedMeanwhile: 'deleted',
  conflictsRetried: 'conflict_retried', undecryptable: 'undecryptable', needsRetiredKey: 'needs_retired_key',
};

export function createMigrationMetrics(registry: Registry): MigrationMetrics {
  const objects = new Counter({
    name: 'atrest_storage_version_migration_objects_total',
    help: 'Stored objects handled by StorageVersionMigrations, by outcome: scanned, rewritten (re-encrypted with the current write provider), already_current, deleted (meanwhile), conflict_retried (a client wrote it first: read again), undecryptable, needs_retired_key (the KMS plugin refused it: its KEK version is retired; restore it).',
    labelNames: ['resource', 'outcome'],
    registers: [registry],
  });
  const running = new Gauge({
    name: 'atrest_storage_version_migrations_running',
    help: 'StorageVersionMigrations this server is running now (0 on replicas that do not hold the lease).',
    labelNames: ['resource'],
    registers: [registry],
  });
  const finished = new Counter({
    name: 'atrest_storage_version_migrations_total',
    help: 'StorageVersionMigrations this server finished, by result (succeeded, failed).',
    labelNames: ['resource', 'result'],
    registers: [registry],
  });
  return {
    objects(resource, delta) {
      for (const [field, outcome] of Object.entries(OUTCOMES) as Array<[keyof MigrationCounts, string]>) if (delta[field] > 0) objects.inc({ resource, outcome }, delta[field]);
    },
    running: (resource, delta) => running.inc({ resource }, delta),
    finished: (resource, result) => finished.inc({ resource, result }),
  };
}
