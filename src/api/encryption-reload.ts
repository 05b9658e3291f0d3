// --encryption-provider-config-automatic-reload: polls the file (kube: every minute). When its
// content hash differs from the loaded one, the new file is validated and built, its KMS providers
// must pass their health checks, and only then is it swapped in; the old generation is closed after
// its grace period (in-flight calls finish on it). A file that fails any step keeps the old config
// and logs why; the next poll tries again. Metrics use kube-apiserver's names.
import { readFile } from 'node:fs/promises';
import { Counter, Gauge } from 'prom-client';
import { configContentHash } from '../config/load.js';
import { messageOf } from '../errors.js';
import { kmsProviderLabel } from '../kms/naming.js';
import type { Logger } from '../log.js';
import { reuseMetric, type Registry } from '../metrics.js';
import { DEFAULT_RELOAD_INTERVAL_MS } from './defaults.js';
import { closeGeneration, type EncryptionGeneration, type EncryptionState } from './encryption.js';

export { DEFAULT_RELOAD_INTERVAL_MS } from './defaults.js';
const DEFAULT_HEALTH_TIMEOUT_MS = 20_000;

export interface ReloadOptions {
  path: string;
  state: EncryptionState;
  load(path: string): Promise<EncryptionGeneration>;
  log: Logger;
  registry: Registry;
  intervalMs?: number;
  /** How long the new KMS providers get to become healthy (default 20 s). */
  healthTimeoutMs?: number;
}

export type ReloadOutcome = 'unchanged' | 'reloaded' | 'failed';

export class EncryptionConfigReloader {
  private timer: NodeJS.Timeout | undefined;
  private readonly closing = new Map<NodeJS.Timeout, EncryptionGeneration>();
  private running: Promise<ReloadOutcome> | undefined;
  private stopped = false;
  private readonly total: Counter<'status'>;
  private readonly last: Gauge<'status'>;

  constructor(private readonly options: ReloadOptions) {
    const registers = [options.registry];
    this.total = reuseMetric(options.registry, 'apiserver_encryption_config_controller_automatic_reloads_total', () => new Counter({
      name: 'apiserver_encryption_config_controller_automatic_reloads_total',
      help: 'Total number of reload successes and failures of encryption configuration split by apiserver identity.',
      labelNames: ['status'], registers,
    }));
    this.last = reuseMetric(options.registry, 'apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds', () => new Gauge({
      name: 'apiserver_encryption_config_controller_automatic_reload_last_timestamp_seconds',
      help: 'Timestamp of the last successful or failed automatic reload of encryption configuration split by apiserver identity.',
      labelNames: ['status'], registers,
    }));
  }

  start(): void {
    const interval = this.options.intervalMs ?? DEFAULT_RELOAD_INTERVAL_MS;
    const tick = (): void => {
      this.timer = setTimeout(() => {
        void this.checkNow().finally(() => {
          if (!this.stopped) tick();
        });
      }, interval);
      this.timer.unref();
    };
    tick();
  }

  /** One poll (serialised with any running one). */
  checkNow(): Promise<ReloadOutcome> {
    if (!this.running) {
      this.running = this.check().finally(() => {
        this.running = undefined;
      });
    }
    return this.running;
  }

  private async check(): Promise<ReloadOutcome> {
    const { path, state, log } = this.options;
    let hash: string;
    try {
      hash = configContentHash(await readFile(path));
    } catch (err) {
      return this.fail(`cannot read the encryption provider configuration file ${path}: ${(err as { code?: string }).code ?? messageOf(err)}`);
    }
    if (hash === state.current.contentHash) return 'unchanged';
    let next: EncryptionGeneration;
    try {
      next = await this.options.load(path);
    } catch (err) {
      return this.fail(messageOf(err));
    }
    try {
      await this.waitHealthy(next);
    } catch (err) {
      await closeGeneration(next).catch(() => {});
      return this.fail(`the new KMS providers are not healthy: ${messageOf(err)}`);
    }
    if (this.stopped) {
      await closeGeneration(next);
      return 'unchanged';
    }
    const old = state.swap(next);
    const grace = old.kms?.closeGracePeriodMs() ?? 0;
    const t = setTimeout(() => {
      this.closing.delete(t);
      void closeGeneration(old).catch((err: unknown) => log.warn({ err: messageOf(err) }, 'closing the replaced encryption configuration failed'));
    }, grace);
    t.unref();
    this.closing.set(t, old);
    this.total.inc({ status: 'success' });
    this.last.set({ status: 'success' }, Date.now() / 1000);
    log.info({ path, contentHash: next.contentHash }, 'loaded a new encryption provider configuration');
    return 'reloaded';
  }

  private async waitHealthy(gen: EncryptionGeneration): Promise<void> {
    if (!gen.kms) return;
    const timeout = this.options.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const kms = gen.kms;
    const work = (async () => {
      await kms.ready();
      for (const check of kms.healthChecks()) await check.check();
    })();
    try {
      await Promise.race([work, new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not healthy within ${timeout} ms: ${kms.providers().map(kmsProviderLabel).join(', ')}`)), timeout);
      })]);
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  private fail(why: string): ReloadOutcome {
    this.total.inc({ status: 'failure' });
    this.last.set({ status: 'failure' }, Date.now() / 1000);
    this.options.log.error({ path: this.options.path, err: why }, 'keeping the current encryption provider configuration: the changed file cannot be used');
    return 'failed';
  }

  /** Stops polling and closes the replaced generations now. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running?.catch(() => {});
    const pending = [...this.closing];
    this.closing.clear();
    for (const [t, gen] of pending) {
      clearTimeout(t);
      await closeGeneration(gen).catch(() => {});
    }
  }
}
