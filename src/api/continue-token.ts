// The list continuation token: base64 of {"v":"meta.k8s.io/v1","rv":<revision>,"start":<key>} like
// kube-apiserver's, where `start` is the last returned key relative to the listed prefix. Lists
// continued from a token are read at the token's revision (a consistent snapshot).
import { badRequest } from './errors.js';

export interface ContinueToken {
  revision: number;
  /** The last key returned, relative to the list prefix. */
  after: string;
}

export function encodeContinue(token: ContinueToken): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv: token.revision, start: token.after + '\u0000' })).toString('base64url');
}

export function decodeContinue(raw: string): ContinueToken {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw badRequest('continue key is not valid: invalid continue token');
  }
  const p = parsed as { v?: unknown; rv?: unknown; start?: unknown };
  if (p.v !== 'meta.k8s.io/v1' || typeof p.rv !== 'number' || !Number.isInteger(p.rv) || p.rv <= 0 || typeof p.start !== 'string') {
    throw badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
  }
  const start = p.start.endsWith('\u0000') ? p.start.slice(0, -1) : p.start;
  if (start.includes('..') || start.startsWith('/')) throw badRequest('continue key is not valid: key is not valid');
  return { revision: p.rv, after: start };
}
