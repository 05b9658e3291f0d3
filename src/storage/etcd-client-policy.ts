// How the etcd store's client picks and retries members: the etcd3 client's own global retry and
// circuit breaker replaced (the store retries itself, knowing which calls are writes), and which
// errors are worth another member or another try.
import { isRecoverableError, type IOptions } from 'etcd3';

type PolicyFn<T> = (context: { signal: AbortSignal }) => PromiseLike<T> | T;
type ClientPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
const noEvent = () => ({ dispose() {} });

/** The etcd3 client's global retry, replaced by a pass-through: this store retries itself, knowing which calls are writes. */
export const passThroughPolicy = {
  execute: <T>(fn: PolicyFn<T>) => Promise.resolve().then(() => fn({ signal: new AbortController().signal })),
  onSuccess: noEvent,
  onFailure: noEvent,
} as unknown as ClientPolicy;

const SKIPPED_MESSAGE = 'etcd member skipped after a recent failure';

/**
 * Per-member policies instead of the client's default circuit breaker (which skips a member for 5 s
 * after 3 failures, so after a rolling restart every member can be "open" at once and the store
 * stalls): a member that just failed with a transient error is skipped for `cooldownMs` while
 * another member is not, and the client moves on to the next member meanwhile.
 */
export function cooldownPolicies(cooldownMs: number): () => ClientPolicy {
  const members: Array<{ skipUntil: number }> = [];
  return () => {
    const me = { skipUntil: 0 };
    members.push(me);
    return {
      execute: async <T>(fn: PolicyFn<T>) => {
        const now = Date.now();
        if (now < me.skipUntil && members.some((m) => now >= m.skipUntil)) throw new Error(SKIPPED_MESSAGE);
        try {
          const result = await fn({ signal: new AbortController().signal });
          me.skipUntil = 0;
          return result;
        } catch (err) {
          if (err instanceof Error && isRecoverableError(err)) me.skipUntil = Date.now() + cooldownMs;
          throw err;
        }
      },
      onSuccess: noEvent,
      onFailure: noEvent,
    } as unknown as ClientPolicy;
  };
}

/** A failure another member or a later try may not have: a member down, a leader election, a timeout. */
export function isTransient(err: Error): boolean {
  if (isRecoverableError(err)) return true;
  // A member skipped after a recent failure (the client wraps our error, keeping its message).
  if (err.message.includes(SKIPPED_MESSAGE)) return true;
  return /etcdserver: (no leader|leader changed|request timed out|too many requests)/.test(err.message);
}
