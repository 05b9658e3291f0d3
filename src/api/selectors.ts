// Label selectors (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`) and the field
// selectors these kinds support (`metadata.name`, `metadata.namespace`, `=`/`==`/`!=`).
import { badRequest } from './errors.js';
import type { KubeObject } from './objects.js';

export type Matcher = (obj: KubeObject) => boolean;

/** Splits on commas that are not inside parentheses. */
function splitTerms(s: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      terms.push(cur);
      cur = '';
    } else cur += ch;
  }
  terms.push(cur);
  return terms.map((t) => t.trim()).filter((t) => t !== '');
}

export function parseLabelSelector(selector: string | null): Matcher {
  if (!selector) return () => true;
  const preds: Array<(labels: Record<string, string>) => boolean> = [];
  for (const term of splitTerms(selector)) {
    let m: RegExpExecArray | null;
    if ((m = /^([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term))) {
      const [, key, op, list] = m as unknown as [string, string, string, string];
      const values = new Set(list.split(',').map((v) => v.trim()).filter((v) => v !== ''));
      preds.push(op === 'in' ? (l) => key in l && values.has(l[key] as string) : (l) => !(key in l) || !values.has(l[key] as string));
    } else if ((m = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(term))) {
      const [, key, op, value] = m as unknown as [string, string, string, string];
      preds.push(op === '!=' ? (l) => l[key] !== value : (l) => l[key] === value);
    } else if ((m = /^!([^\s!=(),]+)$/.exec(term))) {
      const key = m[1] as string;
      preds.push((l) => !(key in l));
    } else if ((m = /^([^\s!=(),]+)$/.exec(term))) {
      const key = m[1] as string;
      preds.push((l) => key in l);
    } else {
      throw badRequest(`unable to parse requirement: ${JSON.stringify(term)}`);
    }
  }
  return (obj) => {
    const labels = obj.metadata.labels ?? {};
    return preds.every((p) => p(labels));
  };
}

const FIELDS: Record<string, (obj: KubeObject) => string> = {
  'metadata.name': (o) => o.metadata.name ?? '',
  'metadata.namespace': (o) => o.metadata.namespace ?? '',
};

/**
 * Field selectors on metadata.name / metadata.namespace. `involvedObject.*` (events) and others are
 * answered by the callers that know them; here they are rejected like kube does for unknown fields.
 */
export function parseFieldSelector(selector: string | null, kind: string): Matcher {
  if (!selector) return () => true;
  const preds: Matcher[] = [];
  for (const term of splitTerms(selector)) {
    const m = /^([^!=]+)(==|=|!=)(.*)$/.exec(term);
    if (!m) throw badRequest(`invalid field selector: ${JSON.stringify(term)}`);
    const [, field, op, value] = m as unknown as [string, string, string, string];
    const get = FIELDS[field.trim()];
    if (!get) throw badRequest(`field label not supported: ${field.trim()} for ${kind}`);
    preds.push(op === '!=' ? (o) => get(o) !== value : (o) => get(o) === value);
  }
  return (obj) => preds.every((p) => p(obj));
}
