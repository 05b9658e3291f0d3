// The KMIP 1.x tags and enumeration values this client uses (OASIS KMIP 1.4 spec, section 9.1.3).
// Only what the operations in client.ts need; names follow the spec.

export const Tag = {
  Attribute: 0x420008,
  AttributeName: 0x42000a,
  AttributeValue: 0x42000b,
  BatchCount: 0x42000d,
  BatchItem: 0x42000f,
  BlockCipherMode: 0x420011,
  CryptographicAlgorithm: 0x420028,
  CryptographicLength: 0x42002a,
  CryptographicParameters: 0x42002b,
  CryptographicUsageMask: 0x42002c,
  IvCounterNonce: 0x42003d,
  MaximumItems: 0x42004f,
  MaximumResponseSize: 0x420050,
  Name: 0x420053,
  NameType: 0x420054,
  NameValue: 0x420055,
  ObjectGroup: 0x420056,
  ObjectType: 0x420057,
  Operation: 0x42005c,
  PaddingMethod: 0x42005f,
  ProtocolVersion: 0x420069,
  ProtocolVersionMajor: 0x42006a,
  ProtocolVersionMinor: 0x42006b,
  RequestHeader: 0x420077,
  RequestMessage: 0x420078,
  RequestPayload: 0x420079,
  ResponseHeader: 0x42007a,
  ResponseMessage: 0x42007b,
  ResponsePayload: 0x42007c,
  ResultMessage: 0x42007d,
  ResultReason: 0x42007e,
  ResultStatus: 0x42007f,
  RevocationMessage: 0x420080,
  RevocationReason: 0x420081,
  RevocationReasonCode: 0x420082,
  State: 0x42008d,
  TemplateAttribute: 0x420091,
  TimeStamp: 0x420092,
  UniqueBatchItemId: 0x420093,
  UniqueIdentifier: 0x420094,
  Data: 0x4200c2,
  RandomIv: 0x4200c5,
  TagLength: 0x4200ce,
  AuthenticatedEncryptionAdditionalData: 0x4200fe,
  AuthenticatedEncryptionTag: 0x4200ff,
} as const;

export const Operation = {
  Create: 0x01,
  Locate: 0x08,
  GetAttributes: 0x0b,
  Activate: 0x12,
  Revoke: 0x13,
  Destroy: 0x14,
  DiscoverVersions: 0x1e,
  Encrypt: 0x1f,
  Decrypt: 0x20,
} as const;
export type OperationCode = (typeof Operation)[keyof typeof Operation];

export const OPERATION_NAMES: Readonly<Record<number, string>> = {
  0x01: 'Create',
  0x08: 'Locate',
  0x0b: 'GetAttributes',
  0x12: 'Activate',
  0x13: 'Revoke',
  0x14: 'Destroy',
  0x1e: 'DiscoverVersions',
  0x1f: 'Encrypt',
  0x20: 'Decrypt',
};

export const ResultStatus = { Success: 0, OperationFailed: 1, OperationPending: 2, OperationUndone: 3 } as const;

export const ResultReason = {
  ItemNotFound: 0x01,
  ResponseTooLarge: 0x02,
  AuthenticationNotSuccessful: 0x03,
  InvalidMessage: 0x04,
  OperationNotSupported: 0x05,
  MissingData: 0x06,
  InvalidField: 0x07,
  FeatureNotSupported: 0x08,
  OperationCanceledByRequester: 0x09,
  CryptographicFailure: 0x0a,
  IllegalOperation: 0x0b,
  PermissionDenied: 0x0c,
  ObjectArchived: 0x0d,
  IndexOutOfBounds: 0x0e,
  ApplicationNamespaceNotSupported: 0x0f,
  KeyFormatTypeNotSupported: 0x10,
  KeyCompressionTypeNotSupported: 0x11,
  EncodingOptionError: 0x12,
  KeyValueNotPresent: 0x13,
  AttestationRequired: 0x14,
  AttestationFailed: 0x15,
  Sensitive: 0x16,
  NotExtractable: 0x17,
  ObjectAlreadyExists: 0x18,
  GeneralFailure: 0x100,
} as const;

export const RESULT_REASON_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(ResultReason).map(([name, value]) => [value, name.replace(/([a-z])([A-Z])/g, '$1 $2')]),
);

export const ObjectType = { SymmetricKey: 0x02 } as const;
export const CryptographicAlgorithm = { AES: 0x03 } as const;
export const BlockCipherMode = { CBC: 0x01, GCM: 0x09 } as const;
export const PaddingMethod = { None: 0x01, PKCS5: 0x03 } as const;
export const CryptographicUsageMask = { Encrypt: 0x04, Decrypt: 0x08 } as const;
export const NameType = { UninterpretedTextString: 0x01 } as const;

export const State = {
  PreActive: 1,
  Active: 2,
  Deactivated: 3,
  Compromised: 4,
  Destroyed: 5,
  DestroyedCompromised: 6,
} as const;

export const STATE_NAMES: Readonly<Record<number, string>> = {
  1: 'Pre-Active',
  2: 'Active',
  3: 'Deactivated',
  4: 'Compromised',
  5: 'Destroyed',
  6: 'Destroyed Compromised',
};

export const RevocationReasonCode = {
  Unspecified: 1,
  KeyCompromise: 2,
  Superseded: 5,
  CessationOfOperation: 6,
} as const;

/** Attribute names as KMIP 1.x spells them in Attribute Name fields. */
export const AttributeName = {
  ActivationDate: 'Activation Date',
  CryptographicAlgorithm: 'Cryptographic Algorithm',
  CryptographicLength: 'Cryptographic Length',
  CryptographicUsageMask: 'Cryptographic Usage Mask',
  InitialDate: 'Initial Date',
  Name: 'Name',
  ObjectGroup: 'Object Group',
  ObjectType: 'Object Type',
  State: 'State',
} as const;
