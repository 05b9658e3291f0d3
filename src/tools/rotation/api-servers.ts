// Whether every API server writes with the new key_id, read the way kube-apiserver shows it:
// `apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds{provider_name,key_id_hash}`
// on /metrics is set each time a kms v2 provider's Status answer carries a key_id, so per provider
// the hash with the latest timestamp is the key_id the server last heard. The server rotates its
// write DEK seed in the same probe and is unhealthy if that fails, so the signal is: the newest
// hash is the new one and /healthz is ok, in two polls in a row. Each poll first GETs /healthz,
// which runs the kms probe (kube-apiserver and atrest serve re-ask the plugin at most every 20 s
// there; their own loop asks once a minute), so a server notices the new key_id within ~20 s.
import { KubeClientError, statusMessage, type KubeClient } from '../kube-client.js';
import { samples } from '../prometheus-text.js';
import { pollUntil, RotateError, type RotateReporter } from './types.js';

export const STATUS_KEY_ID_METRIC = 'apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds';

export interface ServerKeyState {
  healthy: boolean;
  /** provider name → hash of the key_id of its latest Status answer (absent: the server does not report it). */
  providers: Map<string, string>;
}

/** The latest Status key_id hash per provider, from a /metrics text. */
export function latestStatusHashes(metricsText: string): Map<string, string> {
  const best = new Map<string, { hash: string; at: number }>();
  for (const s of samples(metricsText, STATUS_KEY_ID_METRIC)) {
    const name = s.labels['provider_name'];
    const hash = s.labels['key_id_hash'];
    if (name === undefined || hash === undefined || !Number.isFinite(s.value)) continue;
    const seen = best.get(name);
    if (!seen || s.value > seen.at) best.set(name, { hash, at: s.value });
  }
  return new Map([...best].map(([name, v]) => [name, v.hash]));
}

/** One poll of one server: /healthz (which also runs the kms probe), then /metrics. */
export async function serverKeyState(client: KubeClient): Promise<ServerKeyState> {
  const health = await client.request('GET', '/healthz');
  const metrics = await client.request('GET', '/metrics');
  if (metrics.status === 401 || metrics.status === 403) {
    throw new RotateError('incomplete', `${client.url}/metrics: HTTP ${metrics.status}: ${statusMessage(metrics.text)}`,
      'give atrest rotate credentials that may GET the non-resource URL /metrics (kube: the system:monitoring ClusterRole)');
  }
  if (metrics.status !== 200) throw new KubeClientError(`GET ${client.url}/metrics: HTTP ${metrics.status}`);
  return { healthy: health.status === 200, providers: latestStatusHashes(metrics.text) };
}

export interface WaitForServersOptions {
  providerNames: readonly string[];
  /** sha256:… of the new key_id. */
  wantHash: string;
  timeoutMs: number;
  pollMs: number;
  report: RotateReporter;
  signal?: AbortSignal;
}

/** Waits until every server's providers report `wantHash` and the server is healthy, two polls in a row. */
export async function waitForServers(clients: readonly KubeClient[], o: WaitForServersOptions): Promise<void> {
  for (const client of clients) {
    let confirmed = 0;
    let last = '';
    const describe = (s: ServerKeyState): string => {
      const parts = o.providerNames.map((p) => {
        const h = s.providers.get(p);
        return `provider ${p}: ${h === undefined ? 'not reported' : h === o.wantHash ? 'new key_id' : `still ${h.slice(0, 19)}…`}`;
      });
      return `${client.url}: ${parts.join(', ')}${s.healthy ? '' : ', /healthz failing'}`;
    };
    let lastState: ServerKeyState | undefined;
    await pollUntil(async () => {
      let state: ServerKeyState;
      try {
        state = await serverKeyState(client);
      } catch (err) {
        if (err instanceof RotateError) throw err;
        const line = `${client.url}: ${err instanceof Error ? err.message : String(err)}`;
        if (line !== last) o.report.line(line);
        last = line;
        confirmed = 0;
        return undefined;
      }
      lastState = state;
      const ok = state.healthy && o.providerNames.every((p) => state.providers.get(p) === o.wantHash);
      confirmed = ok ? confirmed + 1 : 0;
      const line = describe(state);
      if (line !== last) o.report.line(line);
      last = line;
      return confirmed >= 2 ? true : undefined;
    }, {
      timeoutMs: o.timeoutMs,
      pollMs: o.pollMs,
      ...(o.signal ? { signal: o.signal } : {}),
      onTimeout: () => new RotateError('incomplete', `${client.url} does not write with the new key_id yet (${lastState ? describe(lastState) : 'not reachable'})`,
        lastState && o.providerNames.some((p) => !lastState!.providers.has(p))
          ? 'check that this server uses the same EncryptionConfiguration (same kms provider names) and that its plugin shares the rotated KEK; then run atrest rotate again'
          : 'check that the KMS plugin next to this server serves the new KEK version (its --refresh-interval, its log) and that /healthz is ok; then run atrest rotate again'),
    });
  }
}
