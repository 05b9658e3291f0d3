// `atrest status`: one operator view of the encryption at rest — the health and current key_id hash
// of the kms providers the configuration writes with, optionally the plugins' own health endpoints
// (`kms-plugin --health-listen`), the providers per resource, and the verify counts. This module
// holds the report shape, the plugin probe and the table; src/cli/status.ts gathers the parts with
// the engine (config, KMS health checks) and verifyStore. Never prints a key or a value.
import type { ProviderConfiguration } from '../config/types.js';
import { kmsProviderLabel } from '../kms/naming.js';
import { samples } from './prometheus-text.js';
import { notCheckedLines, retiredKeyLines, verifyTotals, type VerifyReport } from './verify.js';

export interface KmsProviderStatus {
  name: string;
  apiVersion: string;
  /** Resources it is the write provider of. */
  resources: string[];
  healthy: boolean;
  /** Why not healthy (the health check's message). */
  error?: string;
  /** Not healthy because the plugin could not be reached (rather than answering that it is unhealthy). */
  unreachable?: boolean;
  /** The plugin endpoint of the provider (`unix:///…`). */
  endpoint?: string;
  /** sha256 hash of the key_id the plugin's last Status reported (kms v2). */
  keyIdHash?: string;
}

export interface PluginStatus {
  /** host:port of `--health-listen`. */
  address: string;
  healthy: boolean;
  /** The /healthz body, or why it could not be read. */
  detail: string;
  keyIdHash?: string;
  /** ISO time the current KEK version was created (when the backend records it). */
  keyCreated?: string;
  rotations?: number;
  /**
   * kmip/pkcs11 plugins (key hierarchy): whether the remote KEK answers, and when it last did (ISO).
   * While it does not, /healthz fails with the outage although the plugin still serves.
   */
  remoteKek?: { up: boolean; lastSuccess?: string };
}

export interface ResourceStatus {
  resource: string;
  /** Provider labels in order (the first writes): `kms v2:atrest`, `aesgcm:key1,key2`, `identity`. */
  providers: string[];
}

export interface StatusReport {
  kmsProviders: KmsProviderStatus[];
  plugins: PluginStatus[];
  resources: ResourceStatus[];
  /** Absent with --no-verify, and when the store could not be read (then storeError says why). */
  verify?: VerifyReport;
  /** Why the stored values could not be counted: the store could not be opened or read. */
  storeError?: string;
  /** What is wrong, one phrase each (the table's last line); empty when all is well. */
  problems: string[];
  /** Nothing in `problems`. */
  ok: boolean;
}

/**
 * What is wrong, for the summary line: unhealthy kms providers and plugins, a store that could not
 * be read, values not checked, stale and undecryptable values, values that need a retired KEK version.
 */
export function statusProblems(report: Omit<StatusReport, 'problems' | 'ok'>): string[] {
  const problems: string[] = [];
  for (const p of report.kmsProviders) {
    if (!p.healthy) problems.push(`${kmsProviderLabel({ name: p.name, apiVersion: p.apiVersion === 'v2' ? 'v2' : 'v1', ...(p.endpoint ? { endpoint: p.endpoint } : {}) })}: plugin ${p.unreachable ? 'unreachable' : 'unhealthy'}`);
  }
  for (const p of report.plugins) if (!p.healthy) problems.push(`plugin ${p.address} is not healthy`);
  if (report.storeError !== undefined) problems.push('the store could not be read, no values were checked');
  const v = report.verify;
  if (v) {
    const unchecked = v.resources.reduce((n, r) => n + r.unchecked, 0);
    const { stale, undecryptable, needsRetiredKey: retired } = verifyTotals(v);
    if (unchecked) problems.push(`${unchecked} value${unchecked === 1 ? '' : 's'} could not be checked (KMS plugin unreachable; not known to be lost)`);
    if (stale) problems.push(`${stale} stale value${stale === 1 ? '' : 's'} (atrest rewrite)`);
    if (undecryptable) problems.push(`${undecryptable} undecryptable value${undecryptable === 1 ? '' : 's'} (atrest verify lists them)`);
    if (retired) problems.push(`${retired} value${retired === 1 ? ' needs' : 's need'} a retired KEK version (not lost: restore it; atrest verify lists them with the command)`);
  }
  return problems;
}

/** Whether the status could not be established in full (exit 3): a KMS plugin or the store could not be used. */
export function statusIncomplete(report: Omit<StatusReport, 'problems' | 'ok'>): boolean {
  return report.kmsProviders.some((p) => !p.healthy) || report.plugins.some((p) => !p.healthy)
    || report.storeError !== undefined || (report.verify !== undefined && !report.verify.complete);
}

/** A provider as a label: type and key names (never key material) or the kms name. */
export function providerLabel(p: ProviderConfiguration): string {
  if ('identity' in p) return 'identity';
  if ('kms' in p) return `kms ${p.kms.apiVersion ?? 'v1'}:${p.kms.name}`;
  const [type, keys] = 'aesgcm' in p ? ['aesgcm', p.aesgcm] : 'aescbc' in p ? ['aescbc', p.aescbc] : ['secretbox', p.secretbox];
  return `${type}:${keys.keys.map((k) => k.name).join(',')}`;
}

/** Reads a plugin's /healthz and /metrics (`kms-plugin --health-listen host:port`). */
export async function probePlugin(address: string, timeoutMs = 5000): Promise<PluginStatus> {
  const base = `http://${address}`;
  const get = async (path: string): Promise<{ status: number; text: string }> => {
    const res = await fetch(base + path, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, text: await res.text() };
  };
  let health;
  try {
    health = await get('/healthz');
  } catch (err) {
    return { address, healthy: false, detail: `cannot reach ${base}/healthz: ${err instanceof Error ? err.message : String(err)}` };
  }
  const status: PluginStatus = { address, healthy: health.status === 200, detail: health.text.trim().split('\n')[0] ?? '' };
  try {
    const metrics = (await get('/metrics')).text;
    const info = samples(metrics, 'atrest_kms_plugin_current_key_id_hash_info').find((s) => s.value === 1);
    if (info?.labels['key_id_hash']) status.keyIdHash = info.labels['key_id_hash'];
    const created = samples(metrics, 'atrest_kms_plugin_current_key_created_timestamp_seconds')[0];
    if (created && Number.isFinite(created.value)) status.keyCreated = new Date(created.value * 1000).toISOString();
    const rotations = samples(metrics, 'atrest_kms_plugin_key_rotations_total')[0];
    if (rotations) status.rotations = rotations.value;
    const remoteUp = samples(metrics, 'atrest_kms_plugin_remote_kek_up')[0];
    if (remoteUp) {
      const last = samples(metrics, 'atrest_kms_plugin_remote_kek_last_success_timestamp_seconds')[0];
      status.remoteKek = { up: remoteUp.value === 1, ...(last && Number.isFinite(last.value) ? { lastSuccess: new Date(last.value * 1000).toISOString() } : {}) };
    }
  } catch {
    // Health is what matters; the key details are extras.
  }
  return status;
}

/** Aligned columns two spaces apart (the last one unpadded), header first: one string per line. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

/** The human-readable view: one table per part. */
export function formatStatus(report: StatusReport): string {
  const out: string[] = [];
  out.push('KMS PROVIDERS (write providers, as the API server sees them)');
  if (report.kmsProviders.length === 0) out.push('  none: no selected resource is written by a kms provider');
  else out.push(...table(['NAME', 'API', 'HEALTH', 'KEY ID HASH', 'WRITES'], report.kmsProviders.map((p) => [
    p.name, p.apiVersion, p.healthy ? 'ok' : `FAILED: ${p.error ?? ''}`, p.keyIdHash ?? '-', p.resources.join(','),
  ])));
  if (report.plugins.length > 0) {
    out.push('', 'KMS PLUGINS (--health-listen)');
    out.push(...table(['ADDRESS', 'HEALTH', 'KEY ID HASH', 'KEY CREATED', 'ROTATIONS'], report.plugins.map((p) => [
      p.address, p.healthy ? 'ok' : `FAILED: ${p.detail}`, p.keyIdHash ?? '-', p.keyCreated ?? '-', p.rotations === undefined ? '-' : String(p.rotations),
    ])));
  }
  out.push('', 'RESOURCES (providers in order; the first writes)');
  out.push(...table(['RESOURCE', 'PROVIDERS'], report.resources.map((r) => [r.resource, r.providers.join(', ')])));
  if (report.verify) {
    out.push('', `STORED VALUES (verify at revision ${report.verify.revision})`);
    if (report.verify.resources.length === 0) out.push('  no stored values of the selected resources');
    else out.push(...table(['RESOURCE', 'TOTAL', 'CURRENT', 'STALE', 'PLAINTEXT', 'UNDECRYPTABLE', 'RETIRED KEK', 'NOT CHECKED'], report.verify.resources.map((r) => [
      r.resource, String(r.total), String(r.total - r.stale - r.undecryptable.length - r.needsRetiredKey.length - r.unchecked), String(r.stale), String(r.plaintext),
      String(r.undecryptable.length), String(r.needsRetiredKey.length), String(r.unchecked),
    ])));
    out.push(...retiredKeyLines(report.verify.resources, '`atrest verify` prints the plugin\'s message with the `atrest kms-plugin restore-key` command'), ...notCheckedLines(report.verify.notChecked));
  } else if (report.storeError !== undefined) {
    out.push('', 'STORED VALUES', `  could not read the store: ${report.storeError}`);
  }
  out.push('', report.ok ? `OK${report.verify || report.storeError !== undefined ? '' : ' (stored values not checked: --verify=false)'}` : `NOT OK: ${report.problems.join('; ')}`);
  return out.join('\n') + '\n';
}
