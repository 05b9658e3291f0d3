// Validation errors rendered like k8s.io/apimachinery field errors, so messages match
// kube-apiserver's: `<path>: Required value: <detail>` and `<path>: Invalid value: <value>: <detail>`
// (strings Go-quoted, ints bare, lists as Go `%#v`), several joined as `[e1, e2]` with exact
// duplicates dropped (field.ErrorList.ToAggregate + utilerrors.Aggregate).
import { goQuote } from './go-format.js';

/** A value as Go would print it in `Invalid value: ...`, already rendered. */
export type RenderedValue = string;

export interface FieldError {
  type: 'Required' | 'Invalid';
  /** e.g. `resources[0].providers[1].aescbc.keys[0].secret` */
  field: string;
  /** Invalid only: the value as Go prints it (secrets are always `"REDACTED"`). */
  value?: RenderedValue;
  detail: string;
}

export function required(field: string, detail: string): FieldError {
  return { type: 'Required', field, detail };
}

/** An Invalid error with a string value (Go `%q`). */
export function invalidString(field: string, value: string, detail: string): FieldError {
  return { type: 'Invalid', field, value: goQuote(value), detail };
}

/** An Invalid error whose value is already rendered (ints, durations, Go struct dumps). */
export function invalidRendered(field: string, value: RenderedValue, detail: string): FieldError {
  return { type: 'Invalid', field, value, detail };
}

export function renderFieldError(e: FieldError): string {
  const body = e.type === 'Required' ? 'Required value' : `Invalid value: ${e.value ?? 'null'}`;
  return e.detail === '' ? `${e.field}: ${body}` : `${e.field}: ${body}: ${e.detail}`;
}

/** The aggregate text: one error as is, several as `[e1, e2]`, exact duplicates once. */
export function renderFieldErrors(errors: readonly FieldError[]): string {
  const seen = new Set<string>();
  for (const e of errors) seen.add(renderFieldError(e));
  const msgs = [...seen];
  return msgs.length === 1 ? (msgs[0] as string) : `[${msgs.join(', ')}]`;
}
