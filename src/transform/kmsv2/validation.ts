// `ValidateEncryptedObject` of kube-apiserver (format.md §1.6), applied to every kms v2 object on
// write and on read, plus the key_id rule shared with the Status validation (§2.2). Texts are
// kube-apiserver's, byte for byte; sizes are UTF-8 byte counts as Go's len(string).
import { createHash } from 'node:crypto';
import { EnvelopeError, aggregateMessage } from '../../kms/errors.js';
import { AES_GCM_KEY, HKDF_SHA256_XNONCE_AES_GCM_SEED, type EncryptedObject } from './encrypted-object.js';

export const KEY_ID_MAX_SIZE = 1024;
export const ENCRYPTED_DEK_SOURCE_MAX_SIZE = 1024;
export const ANNOTATIONS_MAX_SIZE = 32 * 1024;

/** Label of `apiserver_envelope_encryption_invalid_key_id_from_status_total{error=...}`. */
export type KeyIdErrorCode = 'empty' | 'too_long';

/** The key_id's problem, or undefined when it is valid. */
export function checkKeyId(keyId: string): { code: KeyIdErrorCode; message: string } | undefined {
  if (keyId.length === 0) return { code: 'empty', message: 'keyID is empty' };
  const size = Buffer.byteLength(keyId, 'utf8');
  if (size > KEY_ID_MAX_SIZE) {
    return { code: 'too_long', message: `keyID is ${size} bytes, which exceeds the max size of ${KEY_ID_MAX_SIZE}` };
  }
  return undefined;
}

/** `sha256:<hex>` of a key_id, or '' for an empty one: the only form a key_id is ever shown in. */
export function keyIdHash(keyId: string): string {
  return keyId.length === 0 ? '' : `sha256:${createHash('sha256').update(keyId, 'utf8').digest('hex')}`;
}

function checkEncryptedDEKSource(source: Uint8Array): string | undefined {
  if (source.length === 0) return 'encrypted DEK source is empty';
  if (source.length > ENCRYPTED_DEK_SOURCE_MAX_SIZE) {
    return `encrypted DEK source is ${source.length} bytes, which exceeds the max size of ${ENCRYPTED_DEK_SOURCE_MAX_SIZE}`;
  }
  return undefined;
}

const DNS1123_LABEL_FMT = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_SUBDOMAIN_FMT = `${DNS1123_LABEL_FMT}(\\.${DNS1123_LABEL_FMT})*`;
const DNS1123_LABEL_RE = new RegExp(`^${DNS1123_LABEL_FMT}$`);
const DNS1123_SUBDOMAIN_RE = new RegExp(`^${DNS1123_SUBDOMAIN_FMT}$`);
const SUBDOMAIN_MSG = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL_MSG = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";

function regexError(msg: string, fmt: string, ...examples: string[]): string {
  return `${msg} (e.g. ${examples.map((e) => `'${e}', `).join(' or ')}regex used for validation is '${fmt}')`;
}

function goQuote(s: string): string {
  return JSON.stringify(s);
}

/** k8s.io/apimachinery `IsFullyQualifiedDomainName` rendered as its field error text, or undefined. */
export function checkFullyQualifiedDomainName(field: string, name: string): string | undefined {
  if (name.length === 0) return `${field}: Required value`;
  if (name.endsWith('.')) name = name.slice(0, -1);
  const subdomainErrs: string[] = [];
  if (name.length > 253) subdomainErrs.push('must be no more than 253 characters');
  if (!DNS1123_SUBDOMAIN_RE.test(name)) subdomainErrs.push(regexError(SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, 'example.com'));
  if (subdomainErrs.length) return `${field}: Invalid value: ${goQuote(name)}: ${subdomainErrs.join(',')}`;
  const labels = name.split('.');
  if (labels.length < 2) return `${field}: Invalid value: ${goQuote(name)}: should be a domain with at least two segments separated by dots`;
  for (const label of labels) {
    const errs: string[] = [];
    if (label.length > 63) errs.push('must be no more than 63 characters');
    if (!DNS1123_LABEL_RE.test(label)) {
      errs.push(DNS1123_SUBDOMAIN_RE.test(label) ? 'must not contain dots' : regexError(LABEL_MSG, DNS1123_LABEL_FMT, 'my-name', '123-abc'));
    }
    if (errs.length) return `${field}: Invalid value: ${goQuote(label)}: ${errs.join(',')}`;
  }
  return undefined;
}

/** The annotations' problems joined as Go's aggregate, or undefined. Keys are checked in sorted order. */
export function checkAnnotations(annotations: Record<string, Uint8Array>): string | undefined {
  const errs: string[] = [];
  let total = 0;
  for (const key of Object.keys(annotations).sort()) {
    const err = checkFullyQualifiedDomainName('annotations', key);
    if (err) errs.push(err);
    total += Buffer.byteLength(key, 'utf8') + (annotations[key] as Uint8Array).length;
  }
  if (total > ANNOTATIONS_MAX_SIZE) errs.push(`total size of annotations is ${total}, which exceeds the max size of ${ANNOTATIONS_MAX_SIZE}`);
  return errs.length ? aggregateMessage(errs) : undefined;
}

/** Throws EnvelopeError with kube-apiserver's text when `o` is not a valid EncryptedObject. */
export function validateEncryptedObject(o: EncryptedObject): void {
  const type = o.encryptedDEKSourceType;
  if (type !== AES_GCM_KEY && type !== HKDF_SHA256_XNONCE_AES_GCM_SEED) throw new EnvelopeError(`unknown encryptedDEKSourceType: ${type}`);
  if (o.encryptedData.length === 0) throw new EnvelopeError('encrypted data is empty');
  const sourceErr = checkEncryptedDEKSource(o.encryptedDEKSource);
  if (sourceErr) throw new EnvelopeError(`failed to validate encrypted DEK source: ${sourceErr}`);
  const keyIdErr = checkKeyId(o.keyID);
  if (keyIdErr) throw new EnvelopeError(`failed to validate key id: ${keyIdErr.message}`);
  const annotationsErr = checkAnnotations(o.annotations);
  if (annotationsErr) throw new EnvelopeError(`failed to validate annotations: ${annotationsErr}`);
}
