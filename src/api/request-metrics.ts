// Request metrics with kube-apiserver's names: apiserver_request_total{verb,resource,code} and
// apiserver_request_duration_seconds{verb,resource}. Verbs as kube reports them: GET, LIST, WATCH,
// POST, PUT, PATCH, APPLY, DELETE (plus the HTTP method for non-resource paths).
import { Counter, Histogram } from 'prom-client';
import { reuseMetric, type Registry } from '../metrics.js';

export class RequestMetrics {
  private readonly total: Counter<'verb' | 'resource' | 'code'>;
  private readonly duration: Histogram<'verb' | 'resource'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.total = reuseMetric(registry, 'apiserver_request_total', () => new Counter({
      name: 'apiserver_request_total',
      help: 'Counter of apiserver requests broken out for each verb, resource, and HTTP response code.',
      labelNames: ['verb', 'resource', 'code'],
      registers,
    }));
    this.duration = reuseMetric(registry, 'apiserver_request_duration_seconds', () => new Histogram({
      name: 'apiserver_request_duration_seconds',
      help: 'Response latency distribution in seconds for each verb and resource.',
      labelNames: ['verb', 'resource'],
      buckets: [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60],
      registers,
    }));
  }

  observe(verb: string, resource: string, code: number, seconds: number): void {
    this.total.inc({ verb, resource, code: String(code) });
    // Watches last as long as the client keeps them open: their duration says nothing about latency.
    if (verb !== 'WATCH') this.duration.observe({ verb, resource }, seconds);
  }
}
