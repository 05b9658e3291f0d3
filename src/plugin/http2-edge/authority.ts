// Which request `:authority` values Node's HTTP/2 server (nghttp2) accepts, and the repair of the
// others. Measured on Node 20 with a raw client, one octet at a time (test/plugin/http2-edge.test.ts
// keeps the measurement honest): nghttp2 resets a request stream (RST_STREAM PROTOCOL_ERROR) when
// its :authority (or `host`) is empty or holds an octet outside RFC 3986's authority characters —
// unreserved, sub-delims, ":", "@", "%", "[", "]" — and when a request has neither :authority nor
// host. So a socket path (`/var/run/kms.sock`, what grpc-go < 1.57 sends) fails, its %-encoded
// form (`%2Fvar%2Frun%2Fkms.sock`, grpc-go >= 1.57, grpc C-core >= 1.57) passes, and so does
// `localhost`. A KMS plugin is reached through a UNIX socket only, so the authority names no host
// and `localhost` (what grpc-go sends for `unix:` targets) replaces what nghttp2 would refuse.
import type { HeaderField } from './hpack.js';

export const REPLACEMENT_AUTHORITY = 'localhost';

const ACCEPTED = /^[A-Za-z0-9\-._~!$&'()*+,;=:@%[\]]+$/;

export type AuthorityProblem = 'absent' | 'empty' | 'invalid-characters';

/** Whether nghttp2 accepts this :authority (or host) value. */
export function authorityAccepted(value: string): boolean {
  return ACCEPTED.test(value);
}

function problemOf(value: string): AuthorityProblem | undefined {
  if (value === '') return 'empty';
  return ACCEPTED.test(value) ? undefined : 'invalid-characters';
}

export interface AuthorityRepair {
  fields: HeaderField[];
  /** The value replaced (undefined when :authority was absent). */
  original: string | undefined;
  problem: AuthorityProblem;
}

/**
 * The request's fields with :authority and host made acceptable to nghttp2, or undefined when
 * they already are (or the block is not a request: trailers carry no pseudo-headers).
 */
export function repairAuthority(fields: readonly HeaderField[]): AuthorityRepair | undefined {
  let request = false;
  let hasAuthority = false;
  let repair: AuthorityRepair | undefined;
  for (const [i, field] of fields.entries()) {
    if (field.name === ':method') request = true;
    if (field.name !== ':authority' && field.name !== 'host') continue;
    hasAuthority = true;
    const problem = problemOf(field.value);
    if (!problem) continue;
    repair ??= { fields: [...fields], original: field.value, problem };
    repair.fields[i] = { name: field.name, value: REPLACEMENT_AUTHORITY, neverIndex: field.neverIndex };
  }
  if (!request) return undefined;
  if (!hasAuthority) {
    // Pseudo-header fields come first; their order among themselves does not matter.
    return { fields: [{ name: ':authority', value: REPLACEMENT_AUTHORITY, neverIndex: false }, ...fields], original: undefined, problem: 'absent' };
  }
  return repair;
}
