// The one error type of the KMIP client. `code` says which layer failed; `offset` points into the
// bytes when a TTLV message is malformed; `resultReason` carries the server's KMIP Result Reason.
import { AtrestError } from '../../errors.js';

export type KmipErrorCode =
  /** Bytes that are not valid TTLV (or exceed our caps); `offset` says where. */
  | 'KMIP_MALFORMED'
  /** A value we were asked to encode does not fit its TTLV type. */
  | 'KMIP_ENCODE'
  /** Valid TTLV that is not the KMIP response we expect (missing field, wrong type). */
  | 'KMIP_PROTOCOL'
  /** The server answered with a failed Result Status; see `resultReason`. */
  | 'KMIP_RESULT'
  /** Connect, socket or framing failure; the server may be down. */
  | 'KMIP_TRANSPORT'
  /** TLS handshake or certificate verification failed (either side). Not retried. */
  | 'KMIP_TLS'
  /** No response within the per-call timeout. */
  | 'KMIP_TIMEOUT'
  /** The client was closed. */
  | 'KMIP_CLOSED';

export class KmipError extends AtrestError {
  declare readonly code: KmipErrorCode;
  /** Byte offset of the malformed item (KMIP_MALFORMED). */
  readonly offset: number | undefined;
  /** KMIP Result Reason enumeration value (KMIP_RESULT). */
  readonly resultReason: number | undefined;

  constructor(
    code: KmipErrorCode,
    message: string,
    options: { cause?: unknown; offset?: number; resultReason?: number } = {},
  ) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.offset = options.offset;
    this.resultReason = options.resultReason;
  }
}
