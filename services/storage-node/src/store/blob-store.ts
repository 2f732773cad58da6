import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, statfs, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ShoalError, isNoSpaceError } from '../../../../shared/errors';
import { randomHex32, sha256Hex } from '../../../../shared/hashing';
import { assertValidId, isValidId } from '../../../../shared/ids';
import { BlockChecksummer, checksumsOf } from '../../../../shared/blocks';
import { HashingCounter, Sink, Throttle, readIfSmall } from '../../../../shared/streams';
import type { FileMeta, FileRecord, PreparedUpload } from '../../../../shared/protocol';
import { partitionOf } from '../placement/placement';
import { fsyncDir } from './durable-file';
import type { MetadataStore } from './metadata';
import { SpillingSink } from './spill';
import { openVerified, verifiedBuffer } from './verified-read';

/** A live copy on this node's disk, ready to be read through its block checksums. */
export interface LocalCopy {
  record: FileRecord;
  /** Bytes start..end, every block verified before it is handed on (see openVerified). */
  read(start: number, end: number, framed?: boolean): Promise<Readable>;
}

interface PendingUpload {
  /** Computed only for copies that must prove their bytes alone (pulls, adoption). */
  sha256: string | undefined;
  size: number;
  /** Block checksums of the bytes received (shared/blocks.ts). */
  checksums: Buffer;
  /** A small copy's bytes, held until commit stores them with the row; else they are at `path`. */
  inline: Buffer | undefined;
  path: string;
  preparedAt: number;
}

/**
 * Copies up to this size are kept in SQLite beside their row rather than in a file each: storing
 * one is part of the row's transaction (no create, write, fsync, rename and directory fsync), and
 * reading one is a single query (SQLite reads blobs of this size faster than the file system
 * opens files: sqlite.org, "35% Faster Than The Filesystem").
 */
export const INLINE_MAX_BYTES = 64 * 1024;
/** Memory all received-but-uncommitted small copies may hold; beyond it, new ones go to files. */
const PENDING_INLINE_MAX_BYTES = 64 * 1024 * 1024;

const TOKEN_PATTERN = /^[0-9a-f]{32}$/;

/**
 * Blobs on this node's own disk. A copy becomes visible in two steps, so that no reader ever sees
 * a half-written file and an upload that misses its quorum leaves nothing behind:
 *
 *   receive: stream into tmp/<token>, hashing as it goes; fsync before answering (flush: true).
 *   commit:  check size and sha256, rename into blobs/<shard>/<id>, fsync the directory, then
 *            record the row in SQLite in one transaction. Only then is the copy acknowledged.
 *   abort:   delete the temp file.
 *
 * A crash between rename and the row leaves a blob without a row; a crash before rename leaves a
 * temp file. Both are cleaned up at start (temp files) or reconciled by repair.
 */
export class BlobStore {
  private readonly dataDir: string;
  private readonly blobsDir: string;
  private readonly tmpDir: string;
  private readonly pending = new Map<string, PendingUpload>();
  private pendingInlineBytes = 0;
  /** Ids whose blob is being renamed into place and recorded: not orphans, whatever a scan sees. */
  private readonly committing = new Set<string>();
  private readonly quarantineDir: string;
  /** Quarantined blob file names by file id (`<id>.<ms since epoch>`), read once at start. */
  private readonly quarantined = new Map<string, string[]>();

  constructor(
    dataDir: string,
    private readonly metadata: MetadataStore,
  ) {
    this.dataDir = dataDir;
    this.blobsDir = join(dataDir, 'blobs');
    this.tmpDir = join(dataDir, 'tmp');
    this.quarantineDir = join(dataDir, 'quarantine');
  }

  /** Creates the directory layout and removes temp files a previous process left behind. */
  async init(): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    await mkdir(this.quarantineDir, { recursive: true });
    for (const name of await readdir(this.quarantineDir)) {
      const id = name.slice(0, name.lastIndexOf('.'));
      if (!isValidId(id) || Number.isNaN(quarantinedAt(name))) continue;
      const names = this.quarantined.get(id) ?? [];
      names.push(name);
      this.quarantined.set(id, names);
    }
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true });
    await Promise.all(
      Array.from({ length: 256 }, (_v, i) =>
        mkdir(join(this.blobsDir, i.toString(16).padStart(2, '0')), { recursive: true }),
      ),
    );
    // A new directory's own name is durable only once its parent is fsync'd (fsync(2)). commit()
    // fsyncs a shard after each rename, which keeps the blob's name in the shard but not the
    // shard's in blobs/, nor blobs/ in the data dir, and nothing else fsyncs those two (SQLite
    // fsyncs the data dir when it creates its WAL, before these exist). ext4's journal happens to
    // commit the mkdirs with the first shard fsync; a file system that keeps fsync(2) to the
    // letter could lose every blob of a first start at a power cut (test/chaos/power-loss.test.ts).
    await fsyncDir(this.blobsDir);
    await fsyncDir(this.dataDir);
  }

  blobPath(id: string): string {
    assertValidId(id);
    return join(this.blobsDir, sha256Hex(id).slice(0, 2), id);
  }

  /**
   * Receives a copy: a small one (up to INLINE_MAX_BYTES) into memory, a larger one into a temp
   * file fsync'd as it closes; either way computing its block checksums on the way (and its sha256
   * too when asked: a copy that must prove its bytes alone). Nothing is visible until commit().
   */
  async receive(
    body: Readable | Buffer,
    { sha256 = false }: { sha256?: boolean } = {},
  ): Promise<PreparedUpload> {
    const room = this.pendingInlineBytes < PENDING_INLINE_MAX_BYTES ? INLINE_MAX_BYTES : 0;
    // A small copy is held as one Buffer, without a chain of stream stages: most copies are small.
    const whole =
      sha256 || room === 0 ? undefined : Buffer.isBuffer(body) ? body : await readIfSmall(body, room);
    if (whole && whole.length <= room)
      return this.hold({ inline: whole, checksums: checksumsOf(whole), size: whole.length });
    const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
    const token = randomHex32();
    const path = join(this.tmpDir, token);
    const hasher = sha256 ? new HashingCounter() : undefined;
    const blocks = new BlockChecksummer();
    const sink = new SpillingSink(path, room);
    try {
      if (hasher) await pipeline(source, hasher, blocks, sink);
      else await pipeline(source, blocks, sink);
    } catch (err) {
      await unlink(path).catch(() => undefined);
      if (isNoSpaceError(err))
        throw new ShoalError('insufficient_storage', 'no space left on this node', { cause: err });
      throw err;
    }
    return this.hold(
      { sha256: hasher?.sha256, size: blocks.bytes, checksums: blocks.checksums(), inline: sink.inline },
      token,
    );
  }

  /** Keeps a received copy until its commit or abort. */
  private hold(
    upload: Omit<PendingUpload, 'path' | 'preparedAt' | 'sha256'> & { sha256?: string },
    token: string = randomHex32(),
  ): PreparedUpload {
    this.pendingInlineBytes += upload.inline?.length ?? 0;
    this.pending.set(token, {
      sha256: upload.sha256,
      size: upload.size,
      checksums: upload.checksums,
      inline: upload.inline,
      path: join(this.tmpDir, token),
      preparedAt: Date.now(),
    });
    return { token, size: upload.size };
  }

  /**
   * Makes a received copy visible, once its bytes are shown to be the file's: the same block
   * checksums as `checksums` (the coordinator's, computed from the client's bytes along with the
   * sha256), or, for a copy received with its sha256, that sha256.
   */
  async commit(
    token: string,
    meta: FileMeta,
    heldFor: string | null,
    checksums?: Buffer,
  ): Promise<'stored' | 'already-stored'> {
    const upload = this.takePending(token);
    try {
      const matches =
        upload.size === meta.size &&
        (checksums !== undefined ? checksums.equals(upload.checksums) : upload.sha256 === meta.sha256);
      if (!matches) {
        throw new ShoalError('checksum_mismatch', `the bytes received are not those of file ${meta.id}`);
      }
      const partition = partitionOf(meta.id);
      // The row's insert looks for an earlier row of the id itself, in its transaction.
      if (upload.inline) {
        const result = await this.metadata.putLiveGrouped({
          meta,
          partition,
          heldFor,
          checksums: upload.checksums,
          inline: upload.inline,
        });
        if (result === 'deleted') throw new ShoalError('conflict', 'the file was deleted');
        await this.metadata.durable();
        return result;
      }
      const existing = this.metadata.get(meta.id);
      if (existing?.state === 'deleted') throw new ShoalError('conflict', 'the file was deleted');
      if (existing?.state === 'live') return 'already-stored';
      const finalPath = this.blobPath(meta.id);
      this.committing.add(meta.id);
      await rename(upload.path, finalPath);
      await fsyncDir(join(finalPath, '..'));
      const result = this.metadata.putLive({ meta, partition, heldFor, checksums: upload.checksums });
      if (result === 'deleted') {
        // A delete landed between our check and the insert: deletes win, drop the bytes.
        await unlink(finalPath).catch(() => undefined);
        throw new ShoalError('conflict', 'the file was deleted');
      }
      await this.metadata.durable();
      return result;
    } finally {
      this.committing.delete(meta.id);
      if (!upload.inline) await unlink(upload.path).catch(() => undefined);
    }
  }

  async abort(token: string): Promise<void> {
    if (!TOKEN_PATTERN.test(token)) return;
    const upload = this.pending.get(token);
    if (upload) this.forgetPending(token, upload);
    if (upload && !upload.inline) await unlink(upload.path).catch(() => undefined);
  }

  /** Drops temp files whose upload was never committed nor aborted (the coordinator vanished). */
  async expirePending(maxAgeMs: number): Promise<number> {
    const cutoff = Date.now() - maxAgeMs;
    let expired = 0;
    for (const [token, upload] of this.pending) {
      if (upload.preparedAt < cutoff) {
        this.forgetPending(token, upload);
        if (!upload.inline) await unlink(upload.path).catch(() => undefined);
        expired++;
      }
    }
    return expired;
  }

  metadataOf(id: string): FileRecord | undefined {
    return this.metadata.get(id);
  }

  /**
   * The live copy with its block checksums, or why there is none usable here: 'absent' (no live
   * row), or a fault to act on, 'missing' (the blob is gone or the wrong size) or 'corrupt' (a
   * copy stored before block checksums were kept, whose bytes no longer match its sha256).
   */
  async openLocal(id: string): Promise<LocalCopy | 'absent' | 'missing' | 'corrupt'> {
    const copy = this.metadata.copyOf(id);
    if (!copy || copy.record.state !== 'live') return 'absent';
    const { record, data } = copy;
    if (data) {
      if (data.length !== record.size || !copy.checksums) return 'corrupt';
      const list = copy.checksums;
      return {
        record,
        read: async (start: number, end: number, framed = false) =>
          verifiedBuffer(data, list, start, end, framed),
      };
    }
    const path = this.blobPath(id);
    try {
      if ((await stat(path)).size !== record.size) return 'missing';
    } catch {
      return 'missing';
    }
    const checksums = copy.checksums ?? (await this.backfillChecksums(record, path));
    if (!checksums) return 'corrupt';
    return {
      record,
      read: (start: number, end: number, framed = false) =>
        openVerified(path, record.size, checksums, start, end, framed),
    };
  }

  /**
   * Block checksums for a copy stored before they were kept: computed from its bytes, and kept
   * only if those bytes still match the file's sha256. Undefined when they do not.
   */
  private async backfillChecksums(record: FileRecord, path: string): Promise<Buffer | undefined> {
    const hasher = new HashingCounter();
    const blocks = new BlockChecksummer();
    await pipeline(createReadStream(path), hasher, blocks, new Sink());
    if (hasher.sha256 !== record.sha256 || hasher.bytes !== record.size) return undefined;
    const list = blocks.checksums();
    this.metadata.setChecksums(record.id, list);
    return list;
  }

  /**
   * Leaves a tombstone and frees the bytes. With `force`, an id this node never knew gets a
   * tombstone too (repair telling an owner that missed the delete).
   */
  async delete(id: string, deletedAt: string, force = false): Promise<{ wasLive: boolean; known: boolean }> {
    const result = this.metadata.markDeleted(id, deletedAt, force ? partitionOf(id) : undefined);
    // The tombstone is on disk before the delete is confirmed (a 204 counts on it).
    await this.metadata.durable();
    if (result.wasLive) await this.unlinkBlob(id);
    return result;
  }

  /** Receives a copy from another node and makes it visible, refusing bytes that do not match `meta`. */
  async storeCopy(
    source: Readable,
    meta: FileMeta,
    heldFor: string | null,
  ): Promise<'stored' | 'already-stored'> {
    const prepared = await this.receive(source, { sha256: true });
    return this.commit(prepared.token, meta, heldFor);
  }

  /**
   * Stores small copies handed over with their bytes (a leader's repair batch), each only once its
   * bytes are shown to be the file's: its size and sha256. All rows go in before one shared flush;
   * the results are answered after it. A copy refused (wrong bytes, a tombstone here, too large to
   * keep inline) does not stop the others; a failed transaction fails them all.
   */
  async storeCopies(
    copies: ReadonlyArray<{ meta: FileMeta; heldFor: string | null; data: Buffer }>,
  ): Promise<Array<{ id: string; result: 'stored' | 'already-stored' | 'refused'; reason?: string }>> {
    // Every row is put in the same turn of the event loop, so they share one transaction.
    const results = await Promise.all(
      copies.map(async ({ meta, heldFor, data }) => {
        const id = meta.id;
        if (data.length > INLINE_MAX_BYTES)
          return { id, result: 'refused' as const, reason: 'too large for a batch' };
        if (data.length !== meta.size || sha256Hex(data) !== meta.sha256)
          return { id, result: 'refused' as const, reason: 'the bytes are not those of the file' };
        const result = await this.metadata.putLiveGrouped({
          meta,
          partition: partitionOf(id),
          heldFor,
          checksums: checksumsOf(data),
          inline: data,
        });
        if (result === 'deleted') return { id, result: 'refused' as const, reason: 'the file was deleted' };
        return { id, result };
      }),
    );
    if (results.some((r) => r.result === 'stored')) await this.metadata.durable();
    return results;
  }

  /**
   * The live copies of `ids` kept inline here whose bytes still match their block checksums, up
   * to `maxBytes` in all: a damaged one is left out (the scrubber deals with it), not handed on.
   */
  inlineCopies(ids: readonly string[], maxBytes: number): Array<{ id: string; data: Buffer }> {
    const copies: Array<{ id: string; data: Buffer }> = [];
    let bytes = 0;
    for (const id of new Set(ids)) {
      const copy = this.metadata.copyOf(id);
      const data = copy?.data;
      if (copy?.record.state !== 'live' || !data || !copy.checksums) continue;
      if (data.length !== copy.record.size || !checksumsOf(data).equals(copy.checksums)) continue;
      if (bytes + data.length > maxBytes) break;
      copies.push({ id, data });
      bytes += data.length;
    }
    return copies;
  }

  /**
   * Forgets a surplus copy (its owners hold verified copies) or a tombstone past its grace.
   * A live row is only dropped if it is the copy the caller verified elsewhere (same sha256).
   */
  async forget(id: string, expectedSha256: string | null): Promise<boolean> {
    const record = this.metadata.get(id);
    if (!record) return false;
    if (record.state === 'live' && record.sha256 !== expectedSha256) return false;
    this.metadata.forget(id);
    await this.unlinkBlob(id);
    return true;
  }

  /**
   * Re-reads a live copy and checks every block against its checksum and the whole against its
   * sha256: 'missing' when the blob is gone (or the row is), 'unreadable' when reading it fails
   * (EIO, a directory in its place, ...), 'corrupt' when the bytes do not match.
   */
  async verify(id: string, bytesPerSecond?: number): Promise<'ok' | 'corrupt' | 'missing' | 'unreadable'> {
    const copy = this.metadata.copyOf(id);
    if (!copy || copy.record.state !== 'live') return 'missing';
    const { record, checksums: expected, data } = copy;
    if (data) {
      const ok =
        data.length === record.size &&
        expected !== undefined &&
        checksumsOf(data).equals(expected) &&
        sha256Hex(data) === record.sha256;
      return ok ? 'ok' : 'corrupt';
    }
    const hasher = new HashingCounter();
    const blocks = new BlockChecksummer();
    try {
      const source = createReadStream(this.blobPath(id));
      if (bytesPerSecond) await pipeline(source, new Throttle(bytesPerSecond), hasher, blocks, new Sink());
      else await pipeline(source, hasher, blocks, new Sink());
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'unreadable';
    }
    if (hasher.sha256 !== record.sha256 || hasher.bytes !== record.size) return 'corrupt';
    const actual = blocks.checksums();
    if (!expected) this.metadata.setChecksums(id, actual);
    else if (!expected.equals(actual)) return 'corrupt';
    return 'ok';
  }

  /**
   * Takes a copy out of service without destroying it: the blob moves to quarantine/ (never
   * served; kept for a post-mortem or to be adopted again, see adoptQuarantined) and its live row
   * goes, so anti-entropy sees the copy missing and has a good one made. A tombstone is never
   * touched: a delete that landed meanwhile stands.
   */
  async quarantine(id: string): Promise<void> {
    const data = this.metadata.copyOf(id)?.data;
    if (data) await this.writeToQuarantine(id, data);
    else await this.moveToQuarantine(id, this.blobPath(id));
    this.metadata.forget(id, { state: 'live' });
  }

  /**
   * At start, after a crash or a lost database, the first half of the start-up check: every blob
   * is explained by a row or set aside. A blob whose row is a tombstone is a delete whose unlink
   * did not reach the disk before a crash: the delete is on record, so the bytes go. A blob with
   * no row at all is an upload that never committed here or (metadata.sqlite lost, or restored
   * from an old backup) a copy this node can no longer account for: never deleted, it goes to
   * quarantine/, from where a pull of the same file adopts it again. Pulls wait for this walk
   * (CopyFetcher): one that ran first would write over such a blob with bytes from the network.
   */
  async setAsideUnexplained(): Promise<{ orphanBlobs: number; deletedBlobs: number }> {
    let orphanBlobs = 0;
    let deletedBlobs = 0;
    for (const shard of await readdir(this.blobsDir)) {
      for (const name of await readdir(join(this.blobsDir, shard))) {
        const record = this.metadata.get(name);
        if (record?.state === 'deleted') {
          await unlink(join(this.blobsDir, shard, name)).catch(() => undefined);
          deletedBlobs++;
        } else if (!record && !this.committing.has(name)) {
          if (await this.moveToQuarantine(name, join(this.blobsDir, shard, name))) orphanBlobs++;
        }
      }
    }
    return { orphanBlobs, deletedBlobs };
  }

  /**
   * The second half of the start-up check: a live row whose blob is missing or the wrong size is
   * forgotten, so repair fetches the copy again. Returns how many were.
   */
  async forgetMissing(): Promise<number> {
    let missingBlobs = 0;
    // In pages: SQLite cannot change rows while a statement is still iterating them, and a
    // million rows held at once would be hundreds of MiB.
    for (let after = '', page = this.metadata.liveAfter('', 1000); page.length > 0;) {
      for (const record of page) {
        after = record.id;
        if (record.inline) continue;
        const size = await stat(this.blobPath(record.id)).then(
          (s) => s.size,
          () => -1,
        );
        if (size !== record.size && this.metadata.forget(record.id, { state: 'live' })) missingBlobs++;
      }
      page = this.metadata.liveAfter(after, 1000);
    }
    return missingBlobs;
  }

  /**
   * Stores a quarantined blob of this file again when its bytes are exactly the file's (same
   * size and sha256): after a lost database, repair refills the node from its own disk instead of
   * the network. Returns the bytes adopted, or undefined when no quarantined blob matches.
   */
  async adoptQuarantined(meta: FileMeta, heldFor: string | null): Promise<number | undefined> {
    for (const name of [...(this.quarantined.get(meta.id) ?? [])]) {
      const path = join(this.quarantineDir, name);
      try {
        if ((await stat(path)).size !== meta.size) continue;
        const hasher = new HashingCounter();
        await pipeline(createReadStream(path), hasher, new Sink());
        if (hasher.sha256 !== meta.sha256) continue;
        await this.storeCopy(createReadStream(path), meta, heldFor);
        await unlink(path).catch(() => undefined);
        this.forgetQuarantined(meta.id, name);
        return meta.size;
      } catch {
        // Unreadable or gone: the network copy will do.
      }
    }
    return undefined;
  }

  /**
   * Bounds quarantine/: entries older than `maxAgeMs` go, and while the file system has less
   * than `wantFreeBytes` free, the oldest go first, so quarantined bytes never hold space the node
   * needs for copies it is responsible for.
   */
  async sweepQuarantine(maxAgeMs: number, wantFreeBytes: number): Promise<number> {
    const entries = [...this.quarantined.entries()]
      .flatMap(([id, names]) => names.map((name) => ({ id, name, at: quarantinedAt(name) })))
      .sort((a, b) => a.at - b.at);
    let removed = 0;
    const cutoff = Date.now() - maxAgeMs;
    for (const e of entries) {
      if (e.at >= cutoff) {
        const fs = await statfs(this.quarantineDir).catch(() => undefined);
        if (!fs || fs.bavail * fs.bsize >= wantFreeBytes) break;
      }
      await unlink(join(this.quarantineDir, e.name)).catch(() => undefined);
      this.forgetQuarantined(e.id, e.name);
      removed++;
    }
    return removed;
  }

  /** Blobs held in quarantine/. */
  quarantineCount(): number {
    let n = 0;
    for (const names of this.quarantined.values()) n += names.length;
    return n;
  }

  /** Sets aside the bytes of a small copy kept in SQLite, as a file like any other quarantined copy. */
  private async writeToQuarantine(id: string, data: Buffer): Promise<void> {
    const name = `${id}.${Date.now()}`;
    await writeFile(join(this.quarantineDir, name), data);
    const names = this.quarantined.get(id) ?? [];
    names.push(name);
    this.quarantined.set(id, names);
  }

  /** False when there was nothing at `from` to move. */
  private async moveToQuarantine(id: string, from: string): Promise<boolean> {
    const name = `${id}.${Date.now()}`;
    try {
      await rename(from, join(this.quarantineDir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    const names = this.quarantined.get(id) ?? [];
    names.push(name);
    this.quarantined.set(id, names);
    return true;
  }

  private forgetQuarantined(id: string, name: string): void {
    const names = (this.quarantined.get(id) ?? []).filter((n) => n !== name);
    if (names.length > 0) this.quarantined.set(id, names);
    else this.quarantined.delete(id);
  }

  private async unlinkBlob(id: string): Promise<void> {
    await unlink(this.blobPath(id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  async tempFileCount(): Promise<number> {
    return (await readdir(this.tmpDir)).length;
  }

  private takePending(token: string): PendingUpload {
    const upload = TOKEN_PATTERN.test(token) ? this.pending.get(token) : undefined;
    if (!upload) throw new ShoalError('not_found', 'no prepared upload with that token');
    this.forgetPending(token, upload);
    return upload;
  }

  private forgetPending(token: string, upload: PendingUpload): void {
    if (this.pending.delete(token)) this.pendingInlineBytes -= upload.inline?.length ?? 0;
  }
}

function quarantinedAt(name: string): number {
  return Number(name.slice(name.lastIndexOf('.') + 1));
}
