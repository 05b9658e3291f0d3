// Field validation with kube-apiserver's texts (apimachinery validation.IsDNS1123Subdomain,
// IsDNS1123Label, IsConfigMapKey, label keys and values). Each returns StatusCauses naming the field.
import type { StatusCause } from './errors.js';
import type { KubeObject } from './objects.js';

const DNS1123_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_SUBDOMAIN = `${DNS1123_LABEL}(\\.${DNS1123_LABEL})*`;
const CONFIG_KEY_RE = /^[-._a-zA-Z0-9]+$/;
const QUALIFIED_NAME_PART = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]';
const QUALIFIED_NAME_RE = new RegExp(`^${QUALIFIED_NAME_PART}$`);
const LABEL_VALUE_RE = new RegExp(`^(${QUALIFIED_NAME_PART})?$`);

const goQuote = (s: string): string => JSON.stringify(s);

export function invalidValue(field: string, value: string, detail: string): StatusCause {
  return { reason: 'FieldValueInvalid', message: `Invalid value: ${goQuote(value)}: ${detail}`, field };
}

export function required(field: string, detail: string): StatusCause {
  return { reason: 'FieldValueRequired', message: `Required value: ${detail}`, field };
}

/**
 * apimachinery's pattern checks: MaxLenError past `maxLength`, RegexError (the message, examples and
 * the regex) when `regex` does not match the whole value.
 */
const anchored = new Map<string, RegExp>();

function patternErrors(value: string, maxLength: number, regex: string, message: string, examples: string[]): string[] {
  const errs: string[] = [];
  if (value.length > maxLength) errs.push(`must be no more than ${maxLength} characters`);
  let re = anchored.get(regex);
  if (!re) anchored.set(regex, (re = new RegExp(`^${regex}$`)));
  if (!re.test(value)) {
    errs.push(`${message} (e.g. ${examples.map((e) => `'${e}'`).join(',  or ')}, regex used for validation is '${regex}')`);
  }
  return errs;
}

export function dns1123SubdomainErrors(value: string): string[] {
  return patternErrors(value, 253, DNS1123_SUBDOMAIN,
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character", ['example.com']);
}

export function dns1123LabelErrors(value: string): string[] {
  return patternErrors(value, 63, DNS1123_LABEL,
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character", ['my-name', '123-abc']);
}

/** apimachinery's IsDNS1035Label (resource names). */
export function dns1035LabelErrors(value: string): string[] {
  return patternErrors(value, 63, '[a-z]([-a-z0-9]*[a-z0-9])?',
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character", ['my-name', 'abc-123']);
}

/** metadata.name (or generateName) of a namespaced object (subdomain) or a namespace (label). */
export function validateObjectName(name: string | undefined, generateName: string | undefined, rule: 'subdomain' | 'label'): StatusCause[] {
  if (!name) {
    if (generateName) return [];
    return [required('metadata.name', 'name or generateName is required')];
  }
  const errs = rule === 'label' ? dns1123LabelErrors(name) : dns1123SubdomainErrors(name);
  return errs.map((e) => invalidValue('metadata.name', name, e));
}

/** Keys of Secret.data / ConfigMap.data / binaryData. */
export function validateDataKey(field: string, key: string): StatusCause[] {
  const errs: string[] = [];
  if (key.length > 253) errs.push('must be no more than 253 characters');
  if (!CONFIG_KEY_RE.test(key)) {
    errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')");
  }
  if (key === '.') errs.push("must not be '.'");
  else if (key === '..') errs.push("must not be '..'");
  else if (key.startsWith('..')) errs.push("must not start with '..'");
  return errs.map((e) => invalidValue(`${field}[${key}]`, key, e));
}

/** apimachinery's IsQualifiedName (label keys, condition types). */
export function qualifiedNameErrors(value: string): string[] {
  const errs: string[] = [];
  const parts = value.split('/');
  let name = value;
  if (parts.length === 2) {
    const [prefix, n] = parts as [string, string];
    name = n;
    if (prefix.length === 0) errs.push('prefix part must be non-empty');
    else errs.push(...dns1123SubdomainErrors(prefix).map((e) => `prefix part ${e}`));
  } else if (parts.length > 2) {
    errs.push("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')");
    return errs;
  }
  if (name.length === 0) errs.push('name part must be non-empty');
  else if (name.length > 63) errs.push('name part must be no more than 63 characters');
  if (name.length > 0 && !QUALIFIED_NAME_RE.test(name)) {
    errs.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')");
  }
  return errs;
}

export function validateLabels(labels: Record<string, string> | undefined): StatusCause[] {
  const causes: StatusCause[] = [];
  for (const [k, v] of Object.entries(labels ?? {})) {
    for (const e of qualifiedNameErrors(k)) causes.push(invalidValue('metadata.labels', k, e));
    if (v.length > 63) causes.push(invalidValue('metadata.labels', v, 'must be no more than 63 characters'));
    if (!LABEL_VALUE_RE.test(v)) {
      causes.push(invalidValue('metadata.labels', v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"));
    }
  }
  return causes;
}

export function validateAnnotations(annotations: Record<string, string> | undefined): StatusCause[] {
  const causes: StatusCause[] = [];
  let total = 0;
  for (const [k, v] of Object.entries(annotations ?? {})) {
    for (const e of qualifiedNameErrors(k.toLowerCase())) causes.push(invalidValue('metadata.annotations', k, e));
    total += k.length + v.length;
  }
  if (total > 256 * 1024) {
    causes.push({ reason: 'FieldValueTooLong', message: `Too long: must have at most ${256 * 1024} bytes`, field: 'metadata.annotations' });
  }
  return causes;
}

/** Strict standard base64 (Go's encoding/base64.StdEncoding): returns the byte offset of the first error, or -1. */
export function base64ErrorOffset(s: string): number {
  if (s.length % 4 !== 0) {
    const m = /[^A-Za-z0-9+/=]/.exec(s);
    return m ? m.index : s.length - (s.length % 4);
  }
  const m = /^[A-Za-z0-9+/]*(={0,2})$/.exec(s);
  if (!m) {
    const bad = /[^A-Za-z0-9+/]/.exec(s);
    return bad ? bad.index : 0;
  }
  return -1;
}

/** The metadata every kind validates: name (a DNS subdomain or label), labels, annotations. */
export function metadataCauses(obj: KubeObject, rule: 'subdomain' | 'label'): StatusCause[] {
  return [
    ...validateObjectName(obj.metadata.name, obj.metadata.generateName, rule),
    ...validateLabels(obj.metadata.labels),
    ...validateAnnotations(obj.metadata.annotations),
  ];
}
