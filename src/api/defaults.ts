// Defaults of the API server's flags. A module of constants that imports nothing, so `atrest serve`
// can show them in its help without loading the server.

/** How often `--encryption-provider-config-automatic-reload` checks the file (kube: every minute). */
export const DEFAULT_RELOAD_INTERVAL_MS = 60_000;

/** kube-apiserver's --max-requests-inflight and --max-mutating-requests-inflight defaults. */
export const DEFAULT_MAX_REQUESTS_INFLIGHT = 400;
export const DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT = 200;
