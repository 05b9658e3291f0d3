// Key secrets are Go base64.StdEncoding text (format.md §3.2). Node's base64 decoder is lenient
// (URL alphabet, missing padding, junk), so we check the exact grammar Go accepts first:
// standard alphabet, `=` padding required, nothing after the padding. Like Go's decoder, CR and
// LF anywhere are skipped (a YAML `secret: |` block leaves a trailing newline, and kube accepts
// it). Also like Go's non-strict StdEncoding, unused low bits of the last quantum may be non-zero.

const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The raw key bytes of a `secret`, or undefined when Go's StdEncoding would reject it. */
export function decodeKeySecret(secret: string): Buffer | undefined {
  const text = secret.includes('\n') || secret.includes('\r') ? secret.replace(/[\r\n]/g, '') : secret;
  if (!STD_BASE64.test(text)) return undefined;
  return Buffer.from(text, 'base64');
}
