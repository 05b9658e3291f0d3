// Defaults of the controllers' flags. A module of constants that imports nothing, so `atrest serve`
// can show them in its help without loading a controller.

/** kube-controller-manager's --leader-elect-lease-duration, --leader-elect-renew-deadline, --leader-elect-retry-period. */
export const DEFAULT_LEADER_ELECTION = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 } as const;

/** Values a StorageVersionMigration lists and writes per batch (what `atrest rewrite --batch-size` defaults to). */
export const DEFAULT_MIGRATION_BATCH_SIZE = 500;
