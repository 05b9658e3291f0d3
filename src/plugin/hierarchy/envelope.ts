// The key hierarchy's ciphertext formats: a DEK (kms v1) or DEK seed (kms v2) sealed with AES-256-GCM
// under a local KEK, and where the local KEK's wrapped form (the remote backend's own ciphertext of
// it) travels.
//
//   kms v1 (inline):     'H' ‖ 0x01 ‖ 0x01 ‖ u16be(n) ‖ wrapped local KEK (n bytes) ‖ nonce(12) ‖ sealed ‖ tag(16)
//   kms v2 (annotation): 'H' ‖ 0x01 ‖ 0x02 ‖ nonce(12) ‖ sealed ‖ tag(16)
//                        and EncryptResponse.annotations[LOCAL_KEK_ANNOTATION] = wrapped local KEK
//
// Byte 0 ('H', 0x48) tells these apart from the kmip and pkcs11 backends' own ciphertexts (byte 0 is
// their format 0x01), which values written before the hierarchy still are. Byte 1 is the format
// version, byte 2 the carrier. The AAD of the seal is
//
//   AAD_LABEL ‖ 'H' ‖ version ‖ carrier ‖ u16be(n) ‖ wrapped local KEK
//
// in both carriers, so a value only opens with the very wrapped-local-KEK bytes it was sealed
// next to: swapping in another value's wrapped local KEK (even one that unwraps to the same key) or
// editing it fails the tag, and so does moving a value between carriers or format versions.
import { GCM_NONCE_SIZE, GCM_TAG_SIZE } from '../../crypto/aes-gcm.js';
import { BackendError } from '../backend.js';
import type { SealPrefix } from '../seal-prefix.js';

export const ENVELOPE_MAGIC = 0x48; // 'H'
export const ENVELOPE_VERSION = 0x01;
export const CARRIER_INLINE = 0x01;
export const CARRIER_ANNOTATION = 0x02;
export type Carrier = typeof CARRIER_INLINE | typeof CARRIER_ANNOTATION;

/**
 * The kms v2 annotation that carries the wrapped local KEK. kube-apiserver requires annotation keys
 * to be fully qualified domain names and stores them with each value (32 KiB in all at most).
 */
export const LOCAL_KEK_ANNOTATION = 'local-kek.atrest.dev';

const HEADER_BYTES = 3;
/** Largest wrapped local KEK a v1 envelope can name (u16 length) and that fits the 1024-byte limit. */
export const MAX_WRAPPED_LOCAL_KEK_BYTES = 1024 - HEADER_BYTES - 2 - GCM_NONCE_SIZE - GCM_TAG_SIZE - 64;
const AAD_LABEL = Buffer.from('atrest local KEK seal v1\0', 'latin1');

/** True when `ciphertext` is one of ours (else it is a remote backend's own, from before the hierarchy). */
export function isEnvelope(ciphertext: Uint8Array): boolean {
  return ciphertext[0] === ENVELOPE_MAGIC;
}

function header(carrier: Carrier): Buffer {
  return Buffer.from([ENVELOPE_MAGIC, ENVELOPE_VERSION, carrier]);
}

function lengthOf(wrapped: Uint8Array): Buffer {
  const n = Buffer.alloc(2);
  n.writeUInt16BE(wrapped.length);
  return n;
}

/**
 * What every value sealed under one local KEK in one carrier starts with and authenticates. The AAD
 * is built here only: an envelope is opened with the prefix of the local KEK found by its wrapped
 * bytes (the same bytes), in the envelope's carrier (InMemoryKek.open).
 */
export function sealPrefix(carrier: Carrier, wrapped: Buffer): SealPrefix {
  if (wrapped.length < 1 || wrapped.length > MAX_WRAPPED_LOCAL_KEK_BYTES) {
    throw new BackendError('INTERNAL', `a wrapped local KEK of ${wrapped.length} bytes does not fit the envelope (1..${MAX_WRAPPED_LOCAL_KEK_BYTES})`);
  }
  const h = header(carrier);
  const len = lengthOf(wrapped);
  return {
    head: carrier === CARRIER_INLINE ? Buffer.concat([h, len, wrapped]) : h,
    aad: Buffer.concat([AAD_LABEL, h, len, wrapped]),
  };
}

/**
 * A parsed envelope; `wrapped` is the wrapped local KEK (from the bytes or from the annotation),
 * `sealed` is `nonce ‖ ciphertext ‖ tag`. Its AAD is the sealPrefix of (carrier, wrapped).
 */
export interface ParsedEnvelope {
  carrier: Carrier;
  wrapped: Buffer;
  sealed: Buffer;
}

function invalid(reason: string): BackendError {
  return new BackendError('INVALID_CIPHERTEXT', `not a key-hierarchy ciphertext: ${reason}`);
}

/**
 * Splits an envelope. A v2 (annotation) envelope needs `annotations` to hold LOCAL_KEK_ANNOTATION;
 * a v1 (inline) one ignores annotations. Throws INVALID_CIPHERTEXT naming what is wrong.
 */
export function parseEnvelope(ciphertext: Uint8Array, annotations: Record<string, Uint8Array> | undefined): ParsedEnvelope {
  const b = Buffer.from(ciphertext.buffer, ciphertext.byteOffset, ciphertext.byteLength);
  if (b.length < HEADER_BYTES) throw invalid(`${b.length} bytes is shorter than the header`);
  if (b[0] !== ENVELOPE_MAGIC) throw invalid(`format byte 0x${(b[0] ?? 0).toString(16)}`);
  if (b[1] !== ENVELOPE_VERSION) throw invalid(`unknown envelope version ${b[1]}`);
  const carrier = b[2];
  let wrapped: Buffer;
  let at = HEADER_BYTES;
  if (carrier === CARRIER_INLINE) {
    if (b.length < at + 2) throw invalid('truncated wrapped local KEK length');
    const n = b.readUInt16BE(at);
    at += 2;
    if (n === 0 || b.length < at + n) throw invalid('truncated wrapped local KEK');
    wrapped = b.subarray(at, at + n);
    at += n;
  } else if (carrier === CARRIER_ANNOTATION) {
    const a = annotations?.[LOCAL_KEK_ANNOTATION];
    if (a === undefined || !Object.hasOwn(annotations!, LOCAL_KEK_ANNOTATION) || a.length === 0) {
      throw invalid(`the kms v2 annotation ${LOCAL_KEK_ANNOTATION} (the wrapped local KEK) is missing`);
    }
    if (a.length > MAX_WRAPPED_LOCAL_KEK_BYTES) throw invalid(`the annotation ${LOCAL_KEK_ANNOTATION} is ${a.length} bytes, more than ${MAX_WRAPPED_LOCAL_KEK_BYTES}`);
    wrapped = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  } else {
    throw invalid(`unknown carrier ${carrier}`);
  }
  if (b.length < at + GCM_NONCE_SIZE + 1 + GCM_TAG_SIZE) throw invalid('truncated sealed key');
  return { carrier, wrapped, sealed: b.subarray(at) };
}
