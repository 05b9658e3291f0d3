// Reads an etcd snapshot (`etcdctl snapshot save`, or a member's `member/snap/db`) offline: the
// bbolt file's bucket `key` holds every revision still kept, keyed by the 17-byte revision {main
// u64 BE, '_', sub u64 BE} (+ 't' for a deletion), each value an mvccpb.KeyValue {1 key, 2
// create_revision, 3 mod_revision, 4 version, 5 value, 6 lease}. The state at the snapshot's
// revision is, per key, the KeyValue of its highest revision, unless that revision is a deletion.
import { createHash } from 'node:crypto';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { BboltError, BboltFile } from './bbolt.js';

export interface SnapshotKeyValue {
  key: string;
  value: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  lease: number;
}

/** What `etcdctl snapshot status` reports, computed the same way (etcd 3.4/3.5). */
export interface SnapshotStatus {
  /** CRC-32C over every bucket name, key and value, in order. */
  hash: number;
  /** The main revision of the last entry of bucket `key`. */
  revision: number;
  totalKey: number;
  totalSize: number;
}

export interface EtcdSnapshot {
  status: SnapshotStatus;
  /** Live keys at the snapshot's revision, sorted by key. */
  keyValues: SnapshotKeyValue[];
  /** Keys whose last revision is a deletion. */
  deleted: number;
  /**
   * The SHA-256 trailer `etcdctl snapshot save` appends (etcdutl restore checks it the same way: the
   * file size is a multiple of 512 plus 32): `ok`, `mismatch` (the file was damaged after it was
   * saved; what still parses is returned), or `absent` (e.g. a member's data file).
   */
  integrity: 'ok' | 'mismatch' | 'absent';
}

function checkTrailer(file: Buffer): EtcdSnapshot['integrity'] {
  if (file.length % 512 !== 32) return 'absent';
  const body = file.subarray(0, file.length - 32);
  return createHash('sha256').update(body).digest().equals(file.subarray(file.length - 32)) ? 'ok' : 'mismatch';
}

const REVISION_BYTES = 17;

function decodeKeyValue(bytes: Uint8Array, where: string): SnapshotKeyValue {
  const kv: SnapshotKeyValue = { key: '', value: Buffer.alloc(0), createRevision: 0, modRevision: 0, version: 0, lease: 0 };
  try {
    const r = new BinaryReader(bytes);
    while (r.pos < r.len) {
      const [no, wire] = r.tag();
      if (no === 1 && wire === WireType.LengthDelimited) kv.key = Buffer.from(r.bytes()).toString('utf8');
      else if (no === 5 && wire === WireType.LengthDelimited) kv.value = Buffer.from(r.bytes());
      else if (no >= 2 && no <= 6 && no !== 5 && wire === WireType.Varint) {
        const n = Number(r.int64());
        if (no === 2) kv.createRevision = n;
        else if (no === 3) kv.modRevision = n;
        else if (no === 4) kv.version = n;
        else kv.lease = n;
      } else r.skip(wire);
    }
  } catch (err) {
    throw new BboltError(`${where}: not an mvccpb.KeyValue: ${err instanceof Error ? err.message : String(err)}`);
  }
  return kv;
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

class Crc32c {
  private crc = 0xffffffff;
  update(data: Uint8Array): void {
    let c = this.crc;
    for (const b of data) c = (CRC32C_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
    this.crc = c;
  }
  digest(): number {
    return (this.crc ^ 0xffffffff) >>> 0;
  }
}

/** Parses a whole snapshot file held in memory. Throws BboltError for anything that is not one. */
export function readEtcdSnapshot(file: Buffer): EtcdSnapshot {
  const db = BboltFile.open(file);
  const hash = new Crc32c();
  let totalKey = 0;
  let revision = 0;
  let sawKeyBucket = false;
  const latest = new Map<string, SnapshotKeyValue | null>();
  for (const b of db.rootEntries()) {
    const name = b.key.toString('utf8');
    if (!b.isBucket) throw new BboltError(`top-level entry "${name}" is not a bucket`);
    hash.update(b.key);
    const isKey = name === 'key';
    sawKeyBucket ||= isKey;
    for (const e of db.bucketEntries(b.value, name)) {
      hash.update(e.key);
      // bbolt's ForEach hands a nested bucket's value as nil: it adds nothing to the hash.
      if (!e.isBucket) hash.update(e.value);
      totalKey++;
      if (!isKey) continue;
      if ((e.key.length !== REVISION_BYTES && e.key.length !== REVISION_BYTES + 1) || e.key[8] !== 0x5f) {
        throw new BboltError(`bucket "key": ${e.key.toString('hex')} is not a revision`);
      }
      revision = Number(e.key.readBigUInt64BE(0));
      const where = `revision ${revision}_${e.key.readBigUInt64BE(9)}`;
      const kv = decodeKeyValue(e.value, where);
      // The 18th byte 't' marks a deletion (a tombstone carries only the key).
      latest.set(kv.key, e.key.length === REVISION_BYTES + 1 && e.key[17] === 0x74 ? null : kv);
    }
  }
  if (!sawKeyBucket) throw new BboltError('not an etcd snapshot: the bbolt file has no bucket "key"');
  const keyValues: SnapshotKeyValue[] = [];
  let deleted = 0;
  for (const kv of latest.values()) {
    if (kv) keyValues.push(kv);
    else deleted++;
  }
  keyValues.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { status: { hash: hash.digest(), revision, totalKey, totalSize: db.size }, keyValues, deleted, integrity: checkTrailer(file) };
}
