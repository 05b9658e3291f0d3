// Resource strings of the config (`secrets`, `*.`, `*.apps`, `*.*`, `pandas.awesome.bears.example`)
// as group/resource pairs: schema.ParseGroupResource splits at the FIRST dot.
import type { GroupResource } from './types.js';

export function parseGroupResource(s: string): GroupResource {
  const i = s.indexOf('.');
  return i < 0 ? { group: '', resource: s } : { group: s.slice(i + 1), resource: s.slice(0, i) };
}

/** How kube writes a rule back in errors: `*.` for the core wildcard, else `resource[.group]`. */
export function groupResourceString(gr: GroupResource): string {
  if (gr.group === '' && gr.resource === '*') return '*.';
  return gr.group === '' ? gr.resource : `${gr.resource}.${gr.group}`;
}
