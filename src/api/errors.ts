// Typed errors of the API layer. Each carries what a Kubernetes `Status` needs (HTTP code, reason,
// details); src/api/status.ts turns these and the storage/transform errors into Status objects in
// one place. Messages follow kube-apiserver's wording and never hold secret values.
import { groupResourceString } from '../config/group-resource.js';
import { AtrestError } from '../errors.js';

export type StatusReason =
  | 'BadRequest' | 'Unauthorized' | 'Forbidden' | 'NotFound' | 'AlreadyExists' | 'Conflict' | 'Gone'
  | 'Invalid' | 'MethodNotAllowed' | 'NotAcceptable' | 'RequestEntityTooLarge' | 'UnsupportedMediaType'
  | 'TooManyRequests' | 'InternalError' | 'ServiceUnavailable' | 'Timeout'
  /** KEP-3926: stored values that cannot be decrypted or decoded (500). */
  | 'StoreReadError';

export interface StatusCause {
  reason: string;
  message: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

export class ApiError extends AtrestError {
  constructor(
    readonly httpCode: number,
    readonly reason: StatusReason,
    message: string,
    readonly details?: StatusDetails,
    options?: { cause?: unknown },
  ) {
    super(`API_${reason.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()}`, message, options);
  }
}

/**
 * `resource.group` in messages, as kube names a resource (or kind) of a named group: GroupResource.String().
 * What reaches it is a served resource or kind, never `*`, so config's core-wildcard spelling `*.` never applies.
 */
const qualified = (resource: string, group: string | undefined): string => groupResourceString({ group: group ?? '', resource });

export const notFound = (resource: string, name: string, group?: string): ApiError =>
  new ApiError(404, 'NotFound', `${qualified(resource, group)} "${name}" not found`, { name, ...(group ? { group } : {}), kind: resource });

export const pathNotFound = (): ApiError => new ApiError(404, 'NotFound', 'the server could not find the requested resource');

export const alreadyExists = (resource: string, name: string, group?: string): ApiError =>
  new ApiError(409, 'AlreadyExists', `${qualified(resource, group)} "${name}" already exists`, { name, ...(group ? { group } : {}), kind: resource });

export const conflict = (resource: string, name: string, group?: string): ApiError =>
  new ApiError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${qualified(resource, group)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { name, ...(group ? { group } : {}), kind: resource },
  );

export const badRequest = (message: string): ApiError => new ApiError(400, 'BadRequest', message);

export const forbidden = (resource: string, name: string, why: string): ApiError =>
  new ApiError(403, 'Forbidden', `${resource} "${name}" is forbidden: ${why}`, { name, kind: resource });

export const gone = (message: string): ApiError => new ApiError(410, 'Gone', message);

/** 422 Invalid: `<Kind>[.<group>] "<name>" is invalid: <field>: <message>, ...` with one cause per field error. */
export function invalid(kind: string, name: string, causes: StatusCause[], group?: string): ApiError {
  const text = causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message));
  const joined = text.length === 1 ? text[0] : `[${text.join(', ')}]`;
  return new ApiError(422, 'Invalid', `${qualified(kind, group)} "${name}" is invalid: ${joined}`, { name, ...(group ? { group } : {}), kind, causes });
}

export const unsupportedMediaType = (message: string): ApiError => new ApiError(415, 'UnsupportedMediaType', message);

export const methodNotAllowed = (method: string): ApiError =>
  new ApiError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource (${method})`);

export const tooLarge = (limit: number): ApiError =>
  new ApiError(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${limit}`);

export const unauthorized = (): ApiError => new ApiError(401, 'Unauthorized', 'Unauthorized');

/** kube's answer when --max-requests-inflight / --max-mutating-requests-inflight is reached. */
export const tooManyRequests = (retryAfterSeconds: number): ApiError =>
  new ApiError(429, 'TooManyRequests', 'Too many requests, please try again later.', { retryAfterSeconds });
