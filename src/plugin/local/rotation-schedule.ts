// Scheduled rotation of the local backend (`atrest kms-plugin --backend local --rotation-period
// 720h`): the running plugin adds a new KEK version itself once the current one is a period old,
// with the same optimistic key-file rewrite as rotate-key. Several plugins sharing one key file
// agree: whoever rewrites first wins, the others find a young current version and only reload.
// The new version is current at once; the plugin server's refresh then logs `rotation` and counts
// it (atrest_kms_plugin_key_rotations_total). Old versions stay until `atrest rotate` has
// re-encrypted what they wrap and retires them.
import { Counter, Gauge } from 'prom-client';
import { messageOf } from '../../errors.js';
import type { Logger } from '../../log.js';
import { reuseMetric, type Registry } from '../../metrics.js';
import { keyIdOf, newVersion, updateKeyFile, type KekVersion } from './key-file.js';

/** A failed rotation is tried again after this long (or the period, if shorter). */
const RETRY_MS = 60_000;
/** setTimeout's largest delay; longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface RotationScheduleOptions {
  path: string;
  periodMs: number;
  /** The backend serving the key file: its current version's age, and a reload after rotating. */
  kek: { currentKeyId(): Promise<string>; currentKeyCreatedAt(): Promise<number | undefined>; refresh(): Promise<void> };
  log: Logger;
  metrics?: Registry;
  now?: () => number;
}

/**
 * Adds a version when the newest one in the file is at least `periodMs` old (or has no valid
 * `created`); returns it, or undefined when another process rotated in the meantime.
 */
export async function rotateIfDue(path: string, periodMs: number, now: number): Promise<KekVersion | undefined> {
  let added: KekVersion | undefined;
  // Another plugin on the same file may rotate at the same moment: then the file is read again
  // (its newest version is young now) and nothing is added.
  try {
    await updateKeyFile(path, (contents) => {
      added?.key.fill(0);
      added = undefined;
      const newest = contents.versions[contents.versions.length - 1];
      if (!newest) return undefined;
      const created = Date.parse(newest.created);
      if (Number.isFinite(created) && created + periodMs > now) return undefined;
      added = newVersion(newest.version + 1);
      return { versions: [...contents.versions, added] };
    }, now, 3);
  } catch (err) {
    added?.key.fill(0);
    throw err;
  }
  return added;
}

export interface RotationSchedule {
  /** When the next rotation is due (epoch ms), once known. */
  readonly nextAt: number | undefined;
  stop(): void;
}

export function startRotationSchedule(o: RotationScheduleOptions): RotationSchedule {
  const now = o.now ?? Date.now;
  const registers = o.metrics ? [o.metrics] : [];
  const nextGauge = reuseMetric(o.metrics, 'atrest_kms_plugin_next_rotation_timestamp_seconds', () => new Gauge({
    name: 'atrest_kms_plugin_next_rotation_timestamp_seconds',
    help: 'When the plugin rotates the local KEK next (Unix seconds; --rotation-period).',
    registers,
  }));
  const failures = reuseMetric(o.metrics, 'atrest_kms_plugin_scheduled_rotation_failures_total', () => new Counter({
    name: 'atrest_kms_plugin_scheduled_rotation_failures_total',
    help: 'Scheduled KEK rotations (--rotation-period) that failed; each is tried again a minute later.',
    registers,
  }));
  const startedAt = now();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let nextAt: number | undefined;

  const wait = (ms: number, then: () => Promise<void>): void => {
    if (stopped) return;
    timer = setTimeout(() => void then(), Math.min(Math.max(0, ms), MAX_TIMER_MS));
    timer.unref();
  };

  const plan = async (): Promise<void> => {
    // A key file without a valid `created` counts from the plugin's start.
    const created = await o.kek.currentKeyCreatedAt();
    nextAt = (created ?? startedAt) + o.periodMs;
    nextGauge.set(nextAt / 1000);
    wait(nextAt - now(), tick);
  };

  const tick = async (): Promise<void> => {
    if (stopped) return;
    if (nextAt !== undefined && now() < nextAt) return plan(); // a long wait taken in steps
    try {
      const previousKeyId = await o.kek.currentKeyId();
      const added = await rotateIfDue(o.path, o.periodMs, now());
      if (added) {
        const keyId = keyIdOf(added);
        added.key.fill(0);
        o.log.info({ event: 'scheduled-rotation', keyFile: o.path, version: added.version, keyId, previousKeyId, periodMs: o.periodMs },
          'rotation period reached: new KEK version created (finish the rotation with `atrest rotate --finish`)');
      }
      await o.kek.refresh();
      await plan();
    } catch (err) {
      failures.inc();
      o.log.error({ event: 'scheduled-rotation-failed', keyFile: o.path, err: messageOf(err) }, 'scheduled KEK rotation failed; trying again in a minute');
      wait(Math.min(RETRY_MS, o.periodMs), tick);
    }
  };

  void plan().catch((err: unknown) => {
    o.log.error({ event: 'scheduled-rotation-failed', keyFile: o.path, err: messageOf(err) }, 'cannot plan the scheduled KEK rotation');
  });
  return {
    get nextAt() {
      return nextAt;
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
