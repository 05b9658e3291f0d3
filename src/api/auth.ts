// Bearer token authentication. Tokens come from kube's static token file (--token-auth-file: CSV
// lines `token,user,uid[,"group1,group2"]`, blank lines and `#` comments skipped) or from a token
// generated into the data dir on first start. Tokens are compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { AtrestError } from '../errors.js';
import { withLockFile } from '../lock-file.js';
import { tempPathFor, writeAtomic } from './atomic-file.js';

export interface UserInfo {
  name: string;
  uid: string;
  groups: string[];
}

export interface TokenEntry extends UserInfo {
  token: string;
}

export class TokenFileError extends AtrestError {
  constructor(message: string) {
    super('API_TOKEN_FILE_INVALID', message);
  }
}

/** Splits one CSV line (RFC 4180 quoting). */
function splitCsv(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

export function parseTokenFile(text: string, path: string): TokenEntry[] {
  const entries: TokenEntry[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const rec = splitCsv(line);
    // Never echo the line: it holds a token.
    if (rec.length < 3) throw new TokenFileError(`token file ${path}: line ${i + 1}: want at least 3 columns (token,user,uid), got ${rec.length}`);
    const [token, name, uid, groups] = rec as [string, string, string, string | undefined];
    if (token === '') throw new TokenFileError(`token file ${path}: line ${i + 1}: empty token`);
    entries.push({ token, name, uid, groups: groups ? groups.split(',').map((g) => g.trim()).filter((g) => g !== '') : [] });
  });
  if (entries.length === 0) throw new TokenFileError(`token file ${path} holds no tokens`);
  return entries;
}

export async function loadTokenFile(path: string): Promise<TokenEntry[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new TokenFileError(`cannot read token file ${path}: ${(err as { code?: string }).code ?? 'read failed'}`);
  }
  return parseTokenFile(text, path);
}

/** link(2) errors of a filesystem without hard links (some network, FUSE and container filesystems). */
const NO_HARD_LINKS = new Set(['EPERM', 'EXDEV', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

export interface TokenFileDeps {
  /** fs.link; tests force the fallback with one that fails as a filesystem without hard links does. */
  link?: (existing: string, target: string) => Promise<void>;
}

/**
 * `<data-dir>/tokens.csv` with one admin token, created 0600 on first start and reused. Replicas
 * sharing the data dir may start at once: the file is written whole under a temporary name and
 * hard-linked into place (link fails if the name exists), so exactly one token wins and nobody
 * reads a half-written file. Where the filesystem has no hard links, the same guarantee comes from
 * a lock file (`tokens.csv.lock`) held while the name is checked again and the file renamed into place.
 */
export async function ensureGeneratedTokenFile(path: string, deps: TokenFileDeps = {}): Promise<TokenEntry[]> {
  if (!existsSync(path)) {
    const text = `${randomBytes(32).toString('base64url')},admin,admin,"system:masters"\n`;
    const tmp = tempPathFor(path);
    await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
    let linked = true;
    try {
      await (deps.link ?? link)(tmp, path).catch((err: { code?: string }) => {
        if (err.code === 'EEXIST') return;
        if (!NO_HARD_LINKS.has(err.code ?? '')) throw err;
        linked = false;
      });
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    if (!linked) {
      const lock = `${path}.lock`;
      await withLockFile(lock, async () => {
        if (!existsSync(path)) await writeAtomic(path, text, 0o600);
      }, (waitedS) => new TokenFileError(`another process holds ${lock} (generating the token file) for more than ${waitedS} s; remove it if no atrest serve is starting`));
    }
  }
  return loadTokenFile(path);
}

export class TokenAuthenticator {
  private readonly byHash = new Map<string, TokenEntry>();

  constructor(entries: TokenEntry[]) {
    for (const e of entries) this.byHash.set(digest(e.token), e);
  }

  /** The user of an `Authorization: Bearer <token>` header, or undefined. */
  authenticate(header: string | undefined): UserInfo | undefined {
    if (!header) return undefined;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) return undefined;
    const d = digest(m[1] as string);
    // Looking up by a hash of the token keeps the lookup's timing independent of the token bytes.
    const entry = this.byHash.get(d);
    if (!entry || !timingSafeEqual(Buffer.from(digest(entry.token), 'hex'), Buffer.from(d, 'hex'))) return undefined;
    return { name: entry.name, uid: entry.uid, groups: entry.groups };
  }
}

function digest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
