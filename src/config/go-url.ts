// Enough of Go's net/url.Parse to validate `kms.endpoint` the way kube-apiserver does: the same
// inputs fail with the same texts (`parse "unix:///foo\n.socket": net/url: invalid control
// character in URL`), and the scheme comes out lower-cased. Only the parts that can fail or
// that decide the scheme are ported; the parsed URL itself is not needed here.

import { goQuote } from './go-format.js';

export type GoUrlResult = { ok: true; scheme: string } | { ok: false; error: string };

function isAlpha(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
function isDigit(c: string): boolean {
  return c >= '0' && c <= '9';
}
function isHex(c: string | undefined): boolean {
  return c !== undefined && /^[0-9a-fA-F]$/.test(c);
}
function hasControlByte(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

type Mode = 'path' | 'host' | 'fragment' | 'userPassword';

/** Go's shouldEscape, only for the modes where unescape consults it (host). */
function hostCharInvalid(c: string): boolean {
  if (isAlpha(c) || isDigit(c)) return false;
  if ('-_.~'.includes(c)) return false;
  if ("!$&'()*+,;=:[]<>\"".includes(c)) return false;
  return true;
}

/** Go's unescape: only the error cases (EscapeError, InvalidHostError). */
function unescapeError(s: string, mode: Mode): string | undefined {
  for (let i = 0; i < s.length; ) {
    const c = s[i] as string;
    if (c === '%') {
      if (i + 2 >= s.length || !isHex(s[i + 1]) || !isHex(s[i + 2])) {
        let rest = s.slice(i);
        if (rest.length > 3) rest = rest.slice(0, 3);
        return 'invalid URL escape ' + goQuote(rest);
      }
      if (mode === 'host' && parseInt(s[i + 1] as string, 16) < 8 && s.slice(i, i + 3) !== '%25') {
        return 'invalid URL escape ' + goQuote(s.slice(i, i + 3));
      }
      i += 3;
      continue;
    }
    if (mode === 'host' && c.charCodeAt(0) < 0x80 && hostCharInvalid(c)) {
      return 'invalid character ' + goQuote(c) + ' in host name';
    }
    i++;
  }
  return undefined;
}

function validOptionalPort(port: string): boolean {
  if (port === '') return true;
  if (port[0] !== ':') return false;
  for (const c of port.slice(1)) if (!isDigit(c)) return false;
  return true;
}

function parseHostError(host: string): string | undefined {
  if (host.startsWith('[')) {
    const i = host.lastIndexOf(']');
    if (i < 0) return "missing ']' in host";
    const colonPort = host.slice(i + 1);
    if (!validOptionalPort(colonPort)) return `invalid port ${goQuote(colonPort)} after host`;
  } else {
    const i = host.lastIndexOf(':');
    if (i !== -1) {
      const colonPort = host.slice(i);
      if (!validOptionalPort(colonPort)) return `invalid port ${goQuote(colonPort)} after host`;
    }
  }
  return unescapeError(host, 'host');
}

function validUserinfo(s: string): boolean {
  for (const c of s) {
    if (isAlpha(c) || isDigit(c)) continue;
    if ("-._:~!$&'()*+,;=%@".includes(c)) continue;
    return false;
  }
  return true;
}

function parseAuthorityError(authority: string): string | undefined {
  const i = authority.lastIndexOf('@');
  const hostErr = parseHostError(i < 0 ? authority : authority.slice(i + 1));
  if (hostErr !== undefined) return hostErr;
  if (i < 0) return undefined;
  const userinfo = authority.slice(0, i);
  if (!validUserinfo(userinfo)) return 'net/url: invalid userinfo';
  for (const part of userinfo.split(':').slice(0, 2)) {
    const err = unescapeError(part, 'userPassword');
    if (err !== undefined) return err;
  }
  return undefined;
}

/** Go's url.Parse: the lower-cased scheme, or the error text of `*url.Error`. */
export function parseGoUrl(raw: string): GoUrlResult {
  const hashAt = raw.indexOf('#');
  const u = hashAt < 0 ? raw : raw.slice(0, hashAt);
  const frag = hashAt < 0 ? '' : raw.slice(hashAt + 1);
  const fail = (url: string, err: string): GoUrlResult => ({ ok: false, error: `parse ${goQuote(url)}: ${err}` });

  if (hasControlByte(u)) return fail(u, 'net/url: invalid control character in URL');
  if (u === '*') return { ok: true, scheme: '' };

  // getScheme
  let scheme = '';
  let rest = u;
  for (let i = 0; i < u.length; i++) {
    const c = u[i] as string;
    if (isAlpha(c)) continue;
    if (isDigit(c) || c === '+' || c === '-' || c === '.') {
      if (i === 0) break;
      continue;
    }
    if (c === ':') {
      if (i === 0) return fail(u, 'missing protocol scheme');
      scheme = u.slice(0, i);
      rest = u.slice(i + 1);
    }
    break;
  }
  scheme = scheme.toLowerCase();

  if (rest.endsWith('?') && rest.split('?').length === 2) {
    rest = rest.slice(0, -1);
  } else {
    const q = rest.indexOf('?');
    if (q >= 0) rest = rest.slice(0, q);
  }

  if (!rest.startsWith('/')) {
    if (scheme !== '') {
      // An opaque URL such as `unix:relative.sock`: nothing else is checked.
      return checkFragment(raw, frag, scheme);
    }
    const segment = rest.split('/')[0] ?? '';
    if (segment.includes(':')) return fail(u, 'first path segment in URL cannot contain colon');
  }

  if ((scheme !== '' || !rest.startsWith('///')) && rest.startsWith('//')) {
    let authority = rest.slice(2);
    rest = '';
    const slash = authority.indexOf('/');
    if (slash >= 0) {
      rest = authority.slice(slash);
      authority = authority.slice(0, slash);
    }
    const err = parseAuthorityError(authority);
    if (err !== undefined) return fail(u, err);
  }

  const pathErr = unescapeError(rest, 'path');
  if (pathErr !== undefined) return fail(u, pathErr);
  return checkFragment(raw, frag, scheme);
}

function checkFragment(raw: string, frag: string, scheme: string): GoUrlResult {
  if (frag !== '') {
    const err = unescapeError(frag, 'fragment');
    if (err !== undefined) return { ok: false, error: `parse ${goQuote(raw)}: ${err}` };
  }
  return { ok: true, scheme };
}
