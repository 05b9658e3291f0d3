// How every KMS error names its provider (issue #20 §3): the provider, its API version and the
// plugin endpoint, and "plugin unreachable" when the plugin could not be reached at all (as opposed
// to a plugin that answered with an error, e.g. because its own backend, an HSM or KMIP server, is
// down). One helper for the API server (writes, reads, /readyz, reload) and the tools (status,
// rewrite), so an operator sees the same words everywhere and knows which socket to look at.
import { AtrestError, messageOf } from '../errors.js';

export interface KmsProviderRef {
  name: string;
  apiVersion: 'v1' | 'v2';
  /** The `endpoint` of the provider's configuration (`unix:///var/run/kms.sock`); absent in tests of a bare transformer. */
  endpoint?: string;
}

export const PLUGIN_UNREACHABLE = 'plugin unreachable';

/** `kms v2 provider "vault" (plugin unix:///var/run/kms.sock)`. */
export function kmsProviderLabel(ref: KmsProviderRef): string {
  return `kms ${ref.apiVersion} provider "${ref.name}"${ref.endpoint ? ` (plugin ${ref.endpoint})` : ''}`;
}

/**
 * True when `err`, or an error it was caused by, is a call that failed with no connection to the
 * plugin ready (grpc-connection.ts): no socket, refused, dropped, or a peer that never completed the
 * handshake. A plugin that answered with an error (say, Unavailable because its HSM or KMIP server
 * is down) is reachable, and is not this.
 */
export function isPluginUnreachable(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    // KmsUnavailableError.unreachable (errors.ts imports this file, so it is not imported back).
    if (e instanceof AtrestError && e.code === 'KMS_UNAVAILABLE' && (e as { unreachable?: unknown }).unreachable === true) return true;
  }
  return false;
}

/** `plugin unreachable: ` when that is the cause of `err`, else nothing. */
export function unreachablePrefix(err: unknown): string {
  return isPluginUnreachable(err) ? `${PLUGIN_UNREACHABLE}: ` : '';
}

/**
 * One line about a KMS failure: `<label>[ <what>]: [plugin unreachable: ]<reason>`, e.g.
 * `kms v1 provider "vault" (plugin unix:///kms.sock) cannot encrypt: plugin unreachable: rpc error: …`.
 */
export function describeKmsFailure(ref: KmsProviderRef, err: unknown, what = ''): string {
  return `${kmsProviderLabel(ref)}${what ? ` ${what}` : ''}: ${unreachablePrefix(err)}${messageOf(err)}`;
}

/**
 * Why a kms provider cannot be used by a check (src/storage/checked-read.ts, atrest status):
 * `<label>: plugin unreachable: <detail>` when the plugin could not be reached or did not answer in
 * time, `<label>: plugin unhealthy: <detail>` when it answered and said it cannot serve. A detail
 * that already names the provider (the probes' errors do) is not named twice.
 */
export function kmsCauseText(ref: KmsProviderRef, unreachable: boolean, detail: string): string {
  const label = kmsProviderLabel(ref);
  let reason = detail.startsWith(`${label}: `) ? detail.slice(label.length + 2) : detail;
  if (reason.startsWith(`${PLUGIN_UNREACHABLE}: `)) reason = reason.slice(PLUGIN_UNREACHABLE.length + 2);
  return `${label}: plugin ${unreachable ? 'unreachable' : 'unhealthy'}: ${reason}`;
}
