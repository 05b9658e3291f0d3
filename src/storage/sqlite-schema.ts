// The embedded store's file layout (see sqlite.ts): one `kv` table of rows, the row id being the
// revision, a `meta` table for the compaction point, and the row shapes read back from them.

export interface LatestRow {
  id: number;
  created: number;
  deleted: number;
  create_revision: number;
  value: Buffer;
}

export interface ListRow {
  id: number;
  name: string;
  created: number;
  create_revision: number;
  value: Buffer;
}

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS kv (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  created INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  create_revision INTEGER NOT NULL,
  prev_revision INTEGER NOT NULL,
  value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_name_id ON kv (name, id);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
`;

/** The columns of an event row (EventRow): `kv` joined with the row it superseded as `p`. */
export const EVENT_COLUMNS = `kv.id, kv.name, kv.created, kv.deleted, kv.create_revision, kv.prev_revision, kv.value,
  p.id AS prev_id, p.value AS prev_value, p.created AS prev_created, p.create_revision AS prev_create_revision, p.deleted AS prev_deleted`;

/** A `kv` row joined with the row it superseded (`p`), as SqliteStore.readEvents returns it. */
export interface EventRow {
  id: number;
  name: string;
  created: number;
  deleted: number;
  create_revision: number;
  prev_revision: number;
  value: Buffer;
  prev_id: number | null;
  prev_value: Buffer | null;
  prev_created: number | null;
  prev_create_revision: number | null;
  prev_deleted: number | null;
}

export function createRevisionOf(row: { id: number; created: number; create_revision: number }): number {
  // A row that created its key stores 0 and is its own create revision (kine does the same).
  return row.created ? row.id : row.create_revision;
}
