// Prometheus metrics (prom-client). Every component takes the Registry it registers into as a
// constructor argument: no global default registry, so two servers in one test process never clash.
import { Registry } from 'prom-client';

export { Registry };

export function newRegistry(): Registry {
  return new Registry();
}

/**
 * The metric `name` already in `registry` (a second server, backend or test on one registry), else
 * `make()` (always, without a registry: an unregistered metric).
 */
export function reuseMetric<T>(registry: Registry | undefined, name: string, make: () => T): T {
  return (registry?.getSingleMetric(name) as T | undefined) ?? make();
}
