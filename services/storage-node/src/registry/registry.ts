import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import type { RegistryEntry } from '../../../../shared/protocol';

/**
 * The cluster's own small state, kept whole on every node: S3 access keys, buckets and their
 * grants. No node is its keeper. Each entry is a register, last writer wins: a write takes the
 * time of the node's clock (or one past the entry's last time, if the clock is behind) and the
 * writing node's id, and of two versions the later time wins, then the greater node id, so
 * every node that has seen the same writes holds the same state whatever order they came in.
 * A removal is a write too (a tombstone, value null), kept so that it beats the entry it removed
 * on a node that comes back with the old one.
 *
 * Entries travel two ways (registry-sync.ts): a write is pushed to every live member at once,
 * and every few seconds each node compares a digest of its whole state with one member's, and
 * swaps entries when they differ: a node that was down, or a push that was lost, is caught up.
 *
 * Its own SQLite file with synchronous=FULL: writes are rare and each must be on disk before the
 * node answers for it.
 */
export class Registry {
  private readonly db: Database.Database;
  private readonly entries = new Map<string, RegistryEntry>();
  private cachedDigest: string | undefined;
  private readonly listeners: Array<(entry: RegistryEntry) => void> = [];
  private readonly stmts: { put: Database.Statement };

  constructor(
    path: string,
    private readonly selfId: string,
    private readonly clock: () => number = Date.now,
  ) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS entries (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT,
        time INTEGER NOT NULL,
        node TEXT NOT NULL,
        PRIMARY KEY (kind, name)
      ) WITHOUT ROWID;
    `);
    this.stmts = {
      put: this.db.prepare(
        'INSERT OR REPLACE INTO entries (kind, name, value, time, node) VALUES (@kind, @name, @value, @time, @node)',
      ),
    };
    const rows = this.db.prepare('SELECT kind, name, value, time, node FROM entries').all() as Array<{
      kind: RegistryEntry['kind'];
      name: string;
      value: string | null;
      time: number;
      node: string;
    }>;
    for (const row of rows) {
      const value = row.value === null ? null : (JSON.parse(row.value) as RegistryEntry['value']);
      this.entries.set(keyOf(row.kind, row.name), { ...row, value });
    }
  }

  /** The live value of an entry; undefined when there is none or it was removed. */
  get(kind: string, name: string): unknown {
    return this.entries.get(keyOf(kind, name))?.value ?? undefined;
  }

  /** The live entries of one kind, by name. */
  list(kind: string): Array<{ name: string; value: unknown }> {
    const out: Array<{ name: string; value: unknown }> = [];
    for (const e of this.entries.values())
      if (e.kind === kind && e.value !== null) out.push({ name: e.name, value: e.value });
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Every entry, tombstones included: what a node that differs is sent. */
  all(): RegistryEntry[] {
    return [...this.entries.values()];
  }

  /**
   * Writes an entry here (null removes it), on disk when this returns; the caller spreads the
   * returned entry to the other members.
   */
  put(kind: RegistryEntry['kind'], name: string, value: RegistryEntry['value']): RegistryEntry {
    const current = this.entries.get(keyOf(kind, name));
    const time = Math.max(this.clock(), (current?.time ?? 0) + 1);
    const entry: RegistryEntry = { kind, name, value: value ?? null, time, node: this.selfId };
    this.store([entry]);
    return entry;
  }

  /** Takes the entries that are newer than this node's; returns those that were. */
  merge(incoming: readonly RegistryEntry[]): RegistryEntry[] {
    // The best version of each entry among those given (one message may carry several).
    const best = new Map<string, RegistryEntry>();
    for (const e of incoming) {
      const key = keyOf(e.kind, e.name);
      const seen = best.get(key) ?? this.entries.get(key);
      if (seen === undefined || wins(e, seen)) best.set(key, e);
    }
    const newer = [...best.values()];
    if (newer.length > 0) this.store(newer);
    return newer;
  }

  /** A digest of the whole state: two nodes with the same digest hold the same entries. */
  digest(): string {
    if (this.cachedDigest === undefined) {
      const hash = createHash('sha256');
      const keys = [...this.entries.keys()].sort();
      for (const key of keys) {
        const e = this.entries.get(key)!;
        hash.update(`${key}\0${e.time}\0${e.node}\n`);
      }
      this.cachedDigest = hash.digest('hex');
    }
    return this.cachedDigest;
  }

  /** Called with each entry that changed here, from a local write or a merge. */
  onChange(listener: (entry: RegistryEntry) => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    this.db.close();
  }

  private store(entries: readonly RegistryEntry[]): void {
    this.db.transaction(() => {
      for (const e of entries)
        this.stmts.put.run({ ...e, value: e.value === null ? null : JSON.stringify(e.value) });
    })();
    for (const e of entries) this.entries.set(keyOf(e.kind, e.name), e);
    this.cachedDigest = undefined;
    for (const e of entries) for (const listener of this.listeners) listener(e);
  }
}

/** A plain record of strings, numbers, booleans and such records, as a registry value. */
export function asJson(value: object): RegistryEntry['value'] {
  return value as unknown as RegistryEntry['value'];
}

function keyOf(kind: string, name: string): string {
  return `${kind}\0${name}`;
}

/** Whether version `a` beats version `b`: the later time, then the greater node id. */
export function wins(
  a: Pick<RegistryEntry, 'time' | 'node'>,
  b: Pick<RegistryEntry, 'time' | 'node'>,
): boolean {
  return a.time !== b.time ? a.time > b.time : a.node > b.node;
}
