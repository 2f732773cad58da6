import Database from 'better-sqlite3';
import type { FileMeta, FileRecord } from '../../../../shared/protocol';

interface Row {
  id: string;
  name: string;
  size: number;
  sha256: string;
  content_type: string;
  created_at: string;
  state: 'live' | 'deleted';
  deleted_at: string | null;
  held_for: string | null;
}

function toRecord(row: Row): FileRecord {
  return {
    id: row.id,
    name: row.name,
    size: row.size,
    sha256: row.sha256,
    contentType: row.content_type,
    createdAt: row.created_at,
    state: row.state,
    deletedAt: row.deleted_at,
    heldFor: row.held_for,
  };
}

export type PutResult = 'stored' | 'already-stored' | 'deleted';

/**
 * This node's own metadata: one SQLite file in its data dir. Rows are immutable facts about
 * files (a file's bytes never change under an id); the only transition is live -> deleted, and a
 * tombstone is never turned back into a live row.
 */
export class MetadataStore {
  private readonly db: Database.Database;
  private readonly stmts;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // FULL: a commit is on disk before we acknowledge it, the whole point of a storage node.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS files (
        id TEXT PRIMARY KEY,
        partition INTEGER NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        content_type TEXT NOT NULL,
        created_at TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('live', 'deleted')),
        deleted_at TEXT,
        held_for TEXT
      ) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS files_by_partition ON files (partition, id);
      CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    `);
    this.stmts = {
      get: this.db.prepare<[string], Row>('SELECT * FROM files WHERE id = ?'),
      insertLive: this.db.prepare(
        `INSERT INTO files (id, partition, name, size, sha256, content_type, created_at, state, deleted_at, held_for)
         VALUES (@id, @partition, @name, @size, @sha256, @contentType, @createdAt, 'live', NULL, @heldFor)`,
      ),
      markDeleted: this.db.prepare(
        `UPDATE files SET state = 'deleted', deleted_at = @deletedAt, held_for = NULL WHERE id = @id AND state = 'live'`,
      ),
      listAfter: this.db.prepare<[string, number], Row>(
        'SELECT * FROM files WHERE id > ? ORDER BY id LIMIT ?',
      ),
      counts: this.db.prepare<[], { files: number; bytes: number | null }>(
        `SELECT COUNT(*) AS files, SUM(size) AS bytes FROM files WHERE state = 'live'`,
      ),
      getSetting: this.db.prepare<[string], { value: string }>('SELECT value FROM settings WHERE key = ?'),
      setSetting: this.db.prepare(
        'INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ),
    };
  }

  get(id: string): FileRecord | undefined {
    const row = this.stmts.get.get(id);
    return row ? toRecord(row) : undefined;
  }

  /** Records a live copy, unless the id is already known (same bytes) or was deleted (deletes win). */
  putLive(meta: FileMeta, partition: number, heldFor: string | null): PutResult {
    return this.db.transaction((): PutResult => {
      const existing = this.stmts.get.get(meta.id);
      if (existing) return existing.state === 'deleted' ? 'deleted' : 'already-stored';
      this.stmts.insertLive.run({ ...meta, partition, heldFor });
      return 'stored';
    })();
  }

  /** Leaves a tombstone. Returns whether a live copy was recorded here before. */
  markDeleted(id: string, deletedAt: string): { wasLive: boolean; known: boolean } {
    return this.db.transaction(() => {
      const existing = this.stmts.get.get(id);
      // Unknown ids get no tombstone: a node only needs one for a file it could otherwise serve
      // or hand back, and random deletes must not fill the table.
      if (!existing) return { wasLive: false, known: false };
      if (existing.state === 'deleted') return { wasLive: false, known: true };
      this.stmts.markDeleted.run({ id, deletedAt });
      return { wasLive: true, known: true };
    })();
  }

  /** Records (live and tombstones) with id > after, in plain byte order of id. */
  listAfter(after: string, limit: number): FileRecord[] {
    return this.stmts.listAfter.all(after, limit).map(toRecord);
  }

  counts(): { files: number; bytes: number } {
    const row = this.stmts.counts.get();
    return { files: row?.files ?? 0, bytes: row?.bytes ?? 0 };
  }

  getSetting(key: string): string | undefined {
    return this.stmts.getSetting.get(key)?.value;
  }

  setSetting(key: string, value: string): void {
    this.stmts.setSetting.run(key, value);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
