// KMIP 1.x request and response messages (pure functions, no I/O): the request payloads of the
// operations the client uses, the Request Message around them, and the checks on a Response
// Message (one batch item, Result Status, Result Reason/Message mapped to KmipError).
import { KmipError } from './errors.js';
import {
  AttributeName,
  BlockCipherMode,
  CryptographicAlgorithm,
  CryptographicUsageMask,
  NameType,
  OPERATION_NAMES,
  ObjectType,
  PaddingMethod,
  RESULT_REASON_NAMES,
  ResultStatus,
  Tag,
  type OperationCode,
} from './tags.js';
import {
  ItemType,
  boolean,
  bytes,
  child,
  children,
  decodeTtlv,
  encodeTtlv,
  enumeration,
  integer,
  optional,
  required,
  struct,
  text,
  type TtlvItem,
} from './ttlv.js';

export interface ProtocolVersion {
  major: number;
  minor: number;
}

export type CipherMode = 'gcm' | 'cbc';

export interface CreateKeyOptions {
  /** Name attributes (Uninterpreted Text String). */
  names: string[];
  objectGroup?: string;
}

export interface LocateQuery {
  name?: string;
  objectGroup?: string;
  /** Restrict to symmetric keys. */
  symmetricKeysOnly?: boolean;
  maxItems?: number;
}

export interface EncryptOptions {
  mode: CipherMode;
  /** GCM only (KMIP 1.4 Authenticated Encryption Additional Data). */
  aad?: Uint8Array;
  /** GCM tag length in bytes. Default 16. */
  tagLength?: number;
}

export interface DecryptOptions {
  mode: CipherMode;
  iv: Uint8Array;
  aad?: Uint8Array;
  tag?: Uint8Array;
}

/** True when requests of version `v` may carry the KMIP 1.4 authenticated-encryption fields. */
export function supportsGcm(v: ProtocolVersion): boolean {
  return v.major > 1 || (v.major === 1 && v.minor >= 4);
}

export const attribute = (name: string, value: TtlvItem): TtlvItem =>
  struct(Tag.Attribute, [text(Tag.AttributeName, name), { ...value, tag: Tag.AttributeValue } as TtlvItem]);

export const nameAttribute = (name: string): TtlvItem =>
  attribute(AttributeName.Name, struct(Tag.AttributeValue, [text(Tag.NameValue, name), enumeration(Tag.NameType, NameType.UninterpretedTextString)]));

export const uidPayload = (uid: string): TtlvItem[] => [text(Tag.UniqueIdentifier, uid)];

/** Create: an AES-256 symmetric key usable for Encrypt and Decrypt. */
export function createAesKeyPayload(o: CreateKeyOptions): TtlvItem[] {
  const attrs = [
    attribute(AttributeName.CryptographicAlgorithm, enumeration(0, CryptographicAlgorithm.AES)),
    attribute(AttributeName.CryptographicLength, integer(0, 256)),
    attribute(AttributeName.CryptographicUsageMask, integer(0, CryptographicUsageMask.Encrypt | CryptographicUsageMask.Decrypt)),
    ...o.names.map(nameAttribute),
    ...(o.objectGroup === undefined ? [] : [attribute(AttributeName.ObjectGroup, text(0, o.objectGroup))]),
  ];
  return [enumeration(Tag.ObjectType, ObjectType.SymmetricKey), struct(Tag.TemplateAttribute, attrs)];
}

export function locatePayload(q: LocateQuery): TtlvItem[] {
  const items: TtlvItem[] = [];
  if (q.maxItems !== undefined) items.push(integer(Tag.MaximumItems, q.maxItems));
  if (q.symmetricKeysOnly) items.push(attribute(AttributeName.ObjectType, enumeration(0, ObjectType.SymmetricKey)));
  if (q.name !== undefined) items.push(nameAttribute(q.name));
  if (q.objectGroup !== undefined) items.push(attribute(AttributeName.ObjectGroup, text(0, q.objectGroup)));
  return items;
}

export function getAttributesPayload(uid: string, names: string[]): TtlvItem[] {
  return [text(Tag.UniqueIdentifier, uid), ...names.map((n) => text(Tag.AttributeName, n))];
}

/** Cryptographic Parameters in the spec's field order; `randomIv` asks the server for the IV. */
export function cryptoParams(mode: CipherMode, tagLength: number, randomIv: boolean): TtlvItem {
  const gcm = mode === 'gcm';
  const items: TtlvItem[] = [enumeration(Tag.BlockCipherMode, gcm ? BlockCipherMode.GCM : BlockCipherMode.CBC)];
  if (!gcm) items.push(enumeration(Tag.PaddingMethod, PaddingMethod.PKCS5));
  items.push(enumeration(Tag.CryptographicAlgorithm, CryptographicAlgorithm.AES));
  if (randomIv) items.push(boolean(Tag.RandomIv, true));
  if (gcm) items.push(integer(Tag.TagLength, tagLength));
  return struct(Tag.CryptographicParameters, items);
}

export function encryptPayload(uid: string, data: Uint8Array, o: EncryptOptions): TtlvItem[] {
  const items: TtlvItem[] = [text(Tag.UniqueIdentifier, uid), cryptoParams(o.mode, o.tagLength ?? 16, true), bytes(Tag.Data, data)];
  if (o.mode === 'gcm' && o.aad !== undefined) items.push(bytes(Tag.AuthenticatedEncryptionAdditionalData, o.aad));
  return items;
}

export function decryptPayload(uid: string, data: Uint8Array, o: DecryptOptions): TtlvItem[] {
  const gcm = o.mode === 'gcm';
  if (gcm && o.tag === undefined) throw new KmipError('KMIP_ENCODE', 'AES-GCM Decrypt needs the authentication tag');
  const items: TtlvItem[] = [
    text(Tag.UniqueIdentifier, uid),
    cryptoParams(o.mode, gcm ? o.tag!.length : 16, false),
    bytes(Tag.Data, data),
    bytes(Tag.IvCounterNonce, o.iv),
  ];
  if (gcm) {
    if (o.aad !== undefined) items.push(bytes(Tag.AuthenticatedEncryptionAdditionalData, o.aad));
    items.push(bytes(Tag.AuthenticatedEncryptionTag, o.tag!));
  }
  return items;
}

export function revokePayload(uid: string, reasonCode: number, message?: string): TtlvItem[] {
  const reason = [enumeration(Tag.RevocationReasonCode, reasonCode), ...(message === undefined ? [] : [text(Tag.RevocationMessage, message)])];
  return [text(Tag.UniqueIdentifier, uid), struct(Tag.RevocationReason, reason)];
}

/** A Request Message with one batch item. */
export function encodeRequest(op: OperationCode, payload: TtlvItem[], v: ProtocolVersion, maxResponseSize: number): Buffer {
  return encodeTtlv(
    struct(Tag.RequestMessage, [
      struct(Tag.RequestHeader, [
        struct(Tag.ProtocolVersion, [integer(Tag.ProtocolVersionMajor, v.major), integer(Tag.ProtocolVersionMinor, v.minor)]),
        integer(Tag.MaximumResponseSize, maxResponseSize),
        integer(Tag.BatchCount, 1),
      ]),
      struct(Tag.BatchItem, [enumeration(Tag.Operation, op), struct(Tag.RequestPayload, payload)]),
    ]),
  );
}

/** Server text in our errors: printable and bounded. */
function cleanServerText(s: string): string {
  // eslint-disable-next-line no-control-regex
  const t = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return t.length > 300 ? t.slice(0, 300) + '…' : t;
}

/**
 * Decodes a Response Message to operation `op` and returns its Response Payload (an empty
 * structure when absent). A failed Result Status becomes KMIP_RESULT with the reason and message.
 */
export function decodeResponse(data: Uint8Array, op: OperationCode, maxBytes: number): TtlvItem {
  const opName = OPERATION_NAMES[op] ?? `operation ${op}`;
  const msg = decodeTtlv(data, { maxBytes });
  if (msg.tag !== Tag.ResponseMessage || msg.type !== ItemType.Structure) {
    throw new KmipError('KMIP_PROTOCOL', `${opName}: the server's answer is not a KMIP Response Message`);
  }
  const header = child(msg, Tag.ResponseHeader);
  if (header === undefined || header.type !== ItemType.Structure) throw new KmipError('KMIP_PROTOCOL', `${opName}: response without a Response Header`);
  const items = children(msg, Tag.BatchItem);
  if (items.length !== 1) throw new KmipError('KMIP_PROTOCOL', `${opName}: expected 1 batch item in the response, got ${items.length}`);
  const item = items[0]!;
  if (item.type !== ItemType.Structure) throw new KmipError('KMIP_PROTOCOL', `${opName}: the response batch item is not a Structure`);
  const respOp = optional(item, Tag.Operation, ItemType.Enumeration, 'Operation');
  if (respOp !== undefined && respOp !== op) {
    throw new KmipError('KMIP_PROTOCOL', `${opName}: the response is for ${OPERATION_NAMES[respOp] ?? `operation ${respOp}`}`);
  }
  const status = required(item, Tag.ResultStatus, ItemType.Enumeration, 'Result Status');
  if (status !== ResultStatus.Success) {
    const reason = optional(item, Tag.ResultReason, ItemType.Enumeration, 'Result Reason');
    const message = optional(item, Tag.ResultMessage, ItemType.TextString, 'Result Message');
    const reasonText = reason === undefined ? `status ${status}` : (RESULT_REASON_NAMES[reason] ?? `reason ${reason}`);
    throw new KmipError('KMIP_RESULT', `${opName} failed: ${reasonText}${message ? ` (${cleanServerText(message)})` : ''}`, {
      ...(reason === undefined ? {} : { resultReason: reason }),
    });
  }
  const payload = child(item, Tag.ResponsePayload);
  if (payload === undefined) return struct(Tag.ResponsePayload, []);
  if (payload.type !== ItemType.Structure) throw new KmipError('KMIP_PROTOCOL', `${opName}: Response Payload is not a Structure`);
  return payload;
}
