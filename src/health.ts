// A named health check, mounted by the API server at /healthz/<name> and /readyz/<name> (and by the
// plugin's health endpoint). Leaf module: imports nothing of ours.
export interface HealthCheck {
  /** kube-apiserver's name for it, e.g. `etcd`, `kms-provider-0`, `kms-providers`. */
  readonly name: string;
  /** Resolves when healthy; rejects with an Error whose message says why (never key material). */
  check(): Promise<void>;
}
