import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { repoRoot } from '../helpers/cluster';
import { LossyFs, lossyFsNeeds, type LossyFsOptions } from '../helpers/lossy-fs';
import { systemDescribe } from '../helpers/requirements';

/**
 * The power-loss tool itself (test/helpers/lossy-fs.py): a crash must lose what was not made
 * durable and keep what was, by the rules in its header. Without this, a durability test run on
 * it could pass because the tool never loses anything.
 */
const describeSystem = systemDescribe({ needs: lossyFsNeeds, optOut: 'SHOAL_SKIP_ROOT_TESTS' });

/** Writes a file and fsyncs it: its bytes are durable, its name not yet. */
function writeSynced(path: string, data: string): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function read(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

describeSystem('lossy-fs, the power-loss file system', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'shoal-lossy-fs-'));
  const mounted: LossyFs[] = [];
  let runs = 0;

  /** A fresh lossy-fs on its own backing dir. */
  async function fresh(options: LossyFsOptions = {}): Promise<{ fs: LossyFs; dir: string }> {
    runs++;
    const dir = join(scratch, `mnt-${runs}`);
    mkdirSync(dir);
    const fs = new LossyFs(join(scratch, `backing-${runs}`), dir, options);
    mounted.push(fs);
    await fs.mount();
    return { fs, dir };
  }

  afterAll(async () => {
    for (const fs of mounted) await fs.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('loses unsynced bytes, truncates and names, and keeps what fsync made durable', async () => {
    const { fs, dir } = await fresh();
    writeSynced(join(dir, 'kept'), 'synced');
    writeSynced(join(dir, 'grown'), 'synced');
    writeSynced(join(dir, 'shrunk'), 'synced bytes');
    writeSynced(join(dir, 'unlinked'), 'synced');
    fsyncDir(dir);

    // None of what follows is fsync'd, or its directory is not.
    writeFileSync(join(dir, 'grown'), ' and more', { flag: 'a' });
    const fd = openSync(join(dir, 'shrunk'), 'r+');
    ftruncateSync(fd, 3);
    closeSync(fd);
    unlinkSync(join(dir, 'unlinked'));
    writeFileSync(join(dir, 'never-synced'), 'lost');
    writeSynced(join(dir, 'bytes-synced-name-not'), 'lost too');
    mkdirSync(join(dir, 'new-dir'));
    writeSynced(join(dir, 'new-dir', 'inside'), 'in a dir whose own name is not durable');
    fsyncDir(join(dir, 'new-dir'));
    expect(read(join(dir, 'grown'))).toBe('synced and more');
    expect(read(join(dir, 'shrunk'))).toBe('syn');

    const discarded = await fs.crash();
    expect(discarded.namespaceChanges).toBeGreaterThanOrEqual(4);
    expect(discarded.bytes).toBeGreaterThan(0);
    await fs.mount();
    expect(read(join(dir, 'kept'))).toBe('synced');
    expect(read(join(dir, 'grown'))).toBe('synced');
    expect(read(join(dir, 'shrunk'))).toBe('synced bytes');
    expect(read(join(dir, 'unlinked'))).toBe('synced');
    expect(readdirSync(dir).sort()).toEqual(['grown', 'kept', 'shrunk', 'unlinked']);

    // fsync alone, without the directory: the bytes of a file whose name is durable.
    writeFileSync(join(dir, 'grown'), ' and more', { flag: 'a' });
    const again = openSync(join(dir, 'grown'), 'r');
    fsyncSync(again);
    closeSync(again);
    await fs.crash();
    await fs.mount();
    expect(read(join(dir, 'grown'))).toBe('synced and more');
    await fs.unmount();
  });

  it('keeps a rename only once a directory it touched is fsynced, and then as a whole', async () => {
    const { fs, dir } = await fresh();
    // The blob store's layout: bytes fsync'd in tmp/, renamed into a shard, the shard fsync'd.
    for (const d of ['tmp', 'blobs', 'blobs/ab']) mkdirSync(join(dir, d));
    fsyncDir(dir);
    fsyncDir(join(dir, 'blobs'));
    writeSynced(join(dir, 'tmp', 'one'), 'first blob');
    writeSynced(join(dir, 'tmp', 'two'), 'second blob');
    fsyncDir(join(dir, 'tmp'));
    renameSync(join(dir, 'tmp', 'one'), join(dir, 'blobs', 'ab', 'one'));
    renameSync(join(dir, 'tmp', 'two'), join(dir, 'blobs', 'ab', 'two'));
    await fs.crash();
    await fs.mount();
    expect(readdirSync(join(dir, 'tmp')).sort()).toEqual(['one', 'two']);
    expect(readdirSync(join(dir, 'blobs', 'ab'))).toEqual([]);

    renameSync(join(dir, 'tmp', 'one'), join(dir, 'blobs', 'ab', 'one'));
    fsyncDir(join(dir, 'blobs', 'ab'));
    renameSync(join(dir, 'tmp', 'two'), join(dir, 'blobs', 'ab', 'two'));
    await fs.crash();
    await fs.mount();
    // The synced rename is whole (gone from tmp/, in the shard); the later one never happened.
    expect(read(join(dir, 'blobs', 'ab', 'one'))).toBe('first blob');
    expect(readdirSync(join(dir, 'blobs', 'ab'))).toEqual(['one']);
    expect(readdirSync(join(dir, 'tmp'))).toEqual(['two']);

    // fsync of the source directory makes the destination's side durable too.
    renameSync(join(dir, 'tmp', 'two'), join(dir, 'blobs', 'ab', 'two'));
    fsyncDir(join(dir, 'tmp'));
    await fs.crash();
    await fs.mount();
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
    expect(read(join(dir, 'blobs', 'ab', 'two'))).toBe('second blob');
    await fs.unmount();
  });

  it("needs the parent's fsync for a new directory, unless metadata is ordered like a journal's", async () => {
    async function newDirSurvives(options: LossyFsOptions): Promise<boolean> {
      const { fs, dir } = await fresh(options);
      mkdirSync(join(dir, 'parent'));
      fsyncDir(dir);
      mkdirSync(join(dir, 'parent', 'child'));
      writeSynced(join(dir, 'parent', 'child', 'file'), 'bytes');
      fsyncDir(join(dir, 'parent', 'child'));
      await fs.crash();
      await fs.mount();
      const survived = read(join(dir, 'parent', 'child', 'file')) === 'bytes';
      await fs.unmount();
      return survived;
    }
    expect(await newDirSurvives({})).toBe(false);
    expect(await newDirSurvives({ orderedMetadata: true })).toBe(true);
  });

  it('runs SQLite in WAL mode (the -shm file mapped): synchronous=FULL commits survive, OFF ones do not', async () => {
    const { fs, dir } = await fresh();
    const commits = 40;

    async function commitThenCut(db: string, synchronous: string): Promise<{ shmMapped: boolean }> {
      // A child process, so that it can be killed at the cut like a real one.
      const script = `
        const Database = require('better-sqlite3');
        const [path, synchronous, n] = process.argv.slice(1);
        const db = new Database(path);
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = ' + synchronous);
        db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)');
        const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
        for (let i = 0; i < Number(n); i++) insert.run(require('node:crypto').randomBytes(3000));
        const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');
        console.log(JSON.stringify({ shmMapped: maps.includes(path + '-shm') }));
        setInterval(() => undefined, 1000);
      `;
      const child = spawn(process.execPath, ['-e', script, db, synchronous, String(commits)], {
        cwd: repoRoot(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise((res) => child.once('exit', res));
      const first = await createInterface({ input: child.stdout })[Symbol.asyncIterator]().next();
      if (first.done) throw new Error(`the SQLite child died before it committed: ${stderr}`);
      const line = first.value as string;
      child.kill('SIGKILL');
      await fs.crash();
      await exited;
      await fs.mount();
      return JSON.parse(line) as { shmMapped: boolean };
    }

    function rowsIn(path: string): number {
      const db = new Database(path, { fileMustExist: true });
      try {
        expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
        const table = db.prepare("SELECT name FROM sqlite_master WHERE name = 't'").get();
        return table ? (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n : 0;
      } finally {
        db.close();
      }
    }

    // Both database files exist durably (empty) first: only the commits differ.
    for (const name of ['full.sqlite', 'off.sqlite']) writeSynced(join(dir, name), '');
    fsyncDir(dir);
    const full = await commitThenCut(join(dir, 'full.sqlite'), 'FULL');
    expect(full.shmMapped).toBe(true);
    expect(rowsIn(join(dir, 'full.sqlite'))).toBe(commits);
    await commitThenCut(join(dir, 'off.sqlite'), 'OFF');
    expect(rowsIn(join(dir, 'off.sqlite'))).toBe(0);
    await fs.unmount();
  });
});
