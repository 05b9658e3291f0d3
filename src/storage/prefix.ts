// Key-range helpers shared by the backends. Keys are compared as UTF-8 bytes (etcd's order), which for
// well-formed strings is the same as comparing code points.

/**
 * The smallest string greater than every string that starts with `prefix`, or undefined when there
 * is none (empty prefix, or a prefix of only U+10FFFF). Incrementing the last code point works
 * because UTF-8 preserves code point order.
 */
export function prefixEndString(prefix: string): string | undefined {
  const cps = Array.from(prefix);
  while (cps.length > 0) {
    const last = cps.pop() as string;
    let cp = (last.codePointAt(0) as number) + 1;
    if (cp === 0xd800) cp = 0xe000; // skip the surrogate range: not valid scalar values
    if (cp <= 0x10ffff) return cps.join('') + String.fromCodePoint(cp);
  }
  return undefined;
}

/** etcd's range end for a byte prefix: the prefix with its last byte below 0xff incremented; `\0` = to the end. */
export function prefixEndBytes(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] as number) < 0xff) {
      end[i] = (end[i] as number) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** A view of `bytes` as a Buffer without copying. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
