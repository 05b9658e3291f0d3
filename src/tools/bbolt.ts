// A small read-only reader of bbolt files (go.etcd.io/bbolt, the format of etcd's data file and of
// `etcdctl snapshot save` output). No npm package reads bbolt, so this follows the on-disk layout:
//   page      = header {id u64, flags u16, count u16, overflow u32} + body; it spans 1+overflow pages
//   meta      = pages 0 and 1: {magic 0xED0CDAED, version 2, pageSize, flags, root bucket {root pgid,
//               sequence}, freelist pgid, high-water pgid, txid, checksum = FNV-64a of the fields
//               before it}; the valid one with the higher txid is the committed state
//   branch    = elements {pos u32, ksize u32, pgid u64}, the key `pos` bytes after the element
//   leaf      = elements {flags u32, pos u32, ksize u32, vsize u32}; flag 0x01 marks a sub-bucket,
//               whose value is {root pgid, sequence} and, when root is 0, an inline page after it
// All integers are little-endian. Every page reference is bounds-checked against the file and the
// high-water mark, and every walk keeps the set of pages it has entered, so a damaged or hostile
// file yields a BboltError naming the page, never a crash or an endless loop.
import { AtrestError } from '../errors.js';

export class BboltError extends AtrestError {
  constructor(message: string) {
    super('BBOLT_INVALID', message);
  }
}

const MAGIC = 0xed0cdaed;
const VERSION = 2;
const PAGE_HEADER = 16;
const ELEMENT_SIZE = 16;
const META_CHECKSUMMED = 56;
const BUCKET_HEADER = 16;
const FLAG_BRANCH = 0x01;
const FLAG_LEAF = 0x02;
const FLAG_META = 0x04;
const BUCKET_LEAF_FLAG = 0x01;
/** bbolt's B+tree is shallow; a deeper walk means a cycle the visited set did not catch or garbage. */
const MAX_DEPTH = 64;

export interface BboltMeta {
  pageSize: number;
  rootPgid: bigint;
  freelistPgid: bigint;
  /** High-water mark: pages at or above it are not part of the file's state. */
  pgid: bigint;
  txid: bigint;
}

export interface BboltEntry {
  key: Buffer;
  /** The value; for a sub-bucket, its raw bucket header (and inline page). */
  value: Buffer;
  isBucket: boolean;
}

function fnv64a(data: Buffer): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of data) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

function readMeta(file: Buffer, offset: number, expectedId: number): BboltMeta | string {
  if (offset + PAGE_HEADER + META_CHECKSUMMED + 8 > file.length) return 'file too short for a meta page';
  const id = file.readBigUInt64LE(offset);
  const flags = file.readUInt16LE(offset + 8);
  if (id !== BigInt(expectedId) || (flags & FLAG_META) === 0) return `page ${expectedId} is not a meta page`;
  const m = offset + PAGE_HEADER;
  if (file.readUInt32LE(m) !== MAGIC) return 'bad magic (not a bbolt file)';
  const version = file.readUInt32LE(m + 4);
  if (version !== VERSION) return `unsupported bbolt version ${version}`;
  const checksum = file.readBigUInt64LE(m + META_CHECKSUMMED);
  if (fnv64a(file.subarray(m, m + META_CHECKSUMMED)) !== checksum) return 'meta checksum mismatch';
  const pageSize = file.readUInt32LE(m + 8);
  if (pageSize < 512 || pageSize > 1 << 20 || (pageSize & (pageSize - 1)) !== 0) return `implausible page size ${pageSize}`;
  return {
    pageSize,
    rootPgid: file.readBigUInt64LE(m + 16),
    freelistPgid: file.readBigUInt64LE(m + 32),
    pgid: file.readBigUInt64LE(m + 40),
    txid: file.readBigUInt64LE(m + 48),
  };
}

/** A page to read elements from: a slice of the file, or an inline bucket page inside a value. */
interface PageView {
  buf: Buffer;
  /** Offset of the page header in buf. */
  at: number;
  /** End of the bytes this page may use (its span). */
  end: number;
  what: string;
}

export class BboltFile {
  readonly meta: BboltMeta;

  private constructor(private readonly file: Buffer, meta: BboltMeta) {
    this.meta = meta;
  }

  /** Parses the meta pages of a whole bbolt file held in memory. */
  static open(file: Buffer): BboltFile {
    const m0 = readMeta(file, 0, 0);
    // Page 1 sits one page size in: take the size from meta 0, or try the usual ones when meta 0 is damaged.
    const sizes = typeof m0 === 'string' ? [4096, 16384, 65536, 8192, 1024, 2048, 32768, 512] : [m0.pageSize];
    let m1: BboltMeta | string = 'file too short for a meta page';
    for (const size of sizes) {
      m1 = readMeta(file, size, 1);
      if (typeof m1 !== 'string') break;
    }
    const valid = [m0, m1].filter((m): m is BboltMeta => typeof m !== 'string');
    if (valid.length === 0) throw new BboltError(`not a readable bbolt file: meta page 0: ${m0 as string}; meta page 1: ${m1 as string}`);
    const meta = valid.reduce((a, b) => (b.txid > a.txid ? b : a));
    if (meta.pgid * BigInt(meta.pageSize) > BigInt(file.length)) {
      throw new BboltError(`truncated bbolt file: the meta says ${meta.pgid} pages of ${meta.pageSize} bytes, the file has ${file.length} bytes`);
    }
    return new BboltFile(file, meta);
  }

  /** The size bbolt reports for the committed state (`tx.Size()`): high-water mark × page size. */
  get size(): number {
    return Number(this.meta.pgid) * this.meta.pageSize;
  }

  /** Entries of the root bucket (the top-level bucket names), in key order. */
  *rootEntries(): Generator<BboltEntry> {
    yield* this.walk(this.meta.rootPgid, new Set(), 0);
  }

  /** Entries of the sub-bucket whose raw header `value` an entry carried. */
  *bucketEntries(value: Buffer, name = 'bucket'): Generator<BboltEntry> {
    if (value.length < BUCKET_HEADER) throw new BboltError(`bucket "${name}": header of ${value.length} bytes`);
    const root = value.readBigUInt64LE(0);
    if (root !== 0n) {
      yield* this.walk(root, new Set(), 0);
      return;
    }
    if (value.length < BUCKET_HEADER + PAGE_HEADER) throw new BboltError(`inline bucket "${name}": no page`);
    yield* this.pageEntries({ buf: value, at: BUCKET_HEADER, end: value.length, what: `inline bucket "${name}"` }, new Set(), 0);
  }

  private page(pgid: bigint, visited: Set<bigint>): PageView {
    const what = `page ${pgid}`;
    if (pgid < 2n || pgid >= this.meta.pgid) throw new BboltError(`${what}: outside the file's pages (2..${this.meta.pgid - 1n})`);
    if (visited.has(pgid)) throw new BboltError(`${what}: referenced twice in one walk (a cycle)`);
    visited.add(pgid);
    const at = Number(pgid) * this.meta.pageSize;
    if (at + PAGE_HEADER > this.file.length) throw new BboltError(`${what}: beyond the end of the file`);
    if (this.file.readBigUInt64LE(at) !== pgid) throw new BboltError(`${what}: its header says page ${this.file.readBigUInt64LE(at)}`);
    const overflow = this.file.readUInt32LE(at + 12);
    const end = at + (overflow + 1) * this.meta.pageSize;
    if (BigInt(overflow) + pgid >= this.meta.pgid || end > this.file.length) throw new BboltError(`${what}: its ${overflow} overflow pages run past the end`);
    return { buf: this.file, at, end, what };
  }

  private *walk(pgid: bigint, visited: Set<bigint>, depth: number): Generator<BboltEntry> {
    yield* this.pageEntries(this.page(pgid, visited), visited, depth);
  }

  private *pageEntries(p: PageView, visited: Set<bigint>, depth: number): Generator<BboltEntry> {
    if (depth > MAX_DEPTH) throw new BboltError(`${p.what}: the tree is deeper than ${MAX_DEPTH} levels`);
    const flags = p.buf.readUInt16LE(p.at + 8);
    const count = p.buf.readUInt16LE(p.at + 10);
    const elements = p.at + PAGE_HEADER;
    if (elements + count * ELEMENT_SIZE > p.end) throw new BboltError(`${p.what}: ${count} elements do not fit in the page`);
    const slice = (start: number, len: number, field: string): Buffer => {
      if (start < elements || start + len > p.end) throw new BboltError(`${p.what}: ${field} lies outside the page`);
      return p.buf.subarray(start, start + len);
    };
    if (flags & FLAG_BRANCH) {
      for (let i = 0; i < count; i++) {
        const e = elements + i * ELEMENT_SIZE;
        const child = p.buf.readBigUInt64LE(e + 8);
        yield* this.walk(child, visited, depth + 1);
      }
    } else if (flags & FLAG_LEAF) {
      for (let i = 0; i < count; i++) {
        const e = elements + i * ELEMENT_SIZE;
        const elFlags = p.buf.readUInt32LE(e);
        const pos = p.buf.readUInt32LE(e + 4);
        const ksize = p.buf.readUInt32LE(e + 8);
        const vsize = p.buf.readUInt32LE(e + 12);
        const key = slice(e + pos, ksize, `key ${i}`);
        const value = slice(e + pos + ksize, vsize, `value ${i}`);
        yield { key, value, isBucket: (elFlags & BUCKET_LEAF_FLAG) !== 0 };
      }
    } else {
      throw new BboltError(`${p.what}: expected a branch or leaf page, found flags 0x${flags.toString(16)}`);
    }
  }
}
