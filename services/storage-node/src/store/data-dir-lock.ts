import Database from 'better-sqlite3';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const LOCK_FILE = 'node.lock';
const PID_FILE = 'node.pid';

export class DataDirLockedError extends Error {
  constructor(
    readonly dataDir: string,
    readonly holderPid: number | undefined,
  ) {
    super(
      `the data dir ${dataDir} is in use by another shoal process` +
        (holderPid !== undefined ? ` (pid ${holderPid})` : '') +
        '; one data dir belongs to one running node',
    );
    this.name = 'DataDirLockedError';
  }
}

export interface DataDirLock {
  release(): void;
}

/**
 * Takes the data dir for this process, before anything in it is read or changed, and holds it for
 * the process's life. Two nodes on one data dir would empty each other's temp files, reconcile
 * each other's blobs and both answer for the same copies.
 *
 * The lock is SQLite's own exclusive lock on `node.lock` (locking_mode EXCLUSIVE after a write),
 * which rests on POSIX advisory locks: the kernel drops it when the process dies however it dies
 * (SIGKILL, OOM, a node's crash), so no stale lock file ever blocks a restart, and a second process
 * is refused whether it runs in the same container, another PID namespace on the host, or through
 * a network file system with working locks. `node.pid` only names the holder in the error.
 */
export function lockDataDir(dataDir: string): DataDirLock {
  const db = new Database(join(dataDir, LOCK_FILE), { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL, since TEXT NOT NULL)');
    // The first write takes the exclusive lock; in EXCLUSIVE locking mode SQLite keeps it after
    // the transaction commits, until the connection closes.
    db.exec('BEGIN EXCLUSIVE');
    db.prepare('DELETE FROM holder').run();
    db.prepare('INSERT INTO holder (pid, since) VALUES (?, ?)').run(process.pid, new Date().toISOString());
    db.exec('COMMIT');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY')) {
      throw new DataDirLockedError(dataDir, readHolderPid(dataDir));
    }
    throw err;
  }
  writeFileSync(join(dataDir, PID_FILE), `${process.pid}\n`);
  return {
    release: () => {
      if (db.open) db.close();
    },
  };
}

function readHolderPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, PID_FILE), 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
