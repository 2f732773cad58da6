import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SpillingSink } from '../../services/storage-node/src/store/spill';

describe('SpillingSink', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'spill-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const chunksOf = (data: Buffer, size: number): Buffer[] =>
    Array.from({ length: Math.ceil(data.length / size) }, (_v, i) => data.subarray(i * size, (i + 1) * size));

  it('keeps bytes within the limit in memory, whole, and writes no file', async () => {
    const data = randomBytes(20_000);
    const sink = new SpillingSink(join(dir, 'f'), 64 * 1024);
    await pipeline(Readable.from(chunksOf(data, 3000)), sink);
    expect(sink.spilled).toBe(false);
    expect(sink.inline?.equals(data)).toBe(true);
    expect(existsSync(join(dir, 'f'))).toBe(false);
  });

  it('keeps a copy of exactly the limit in memory', async () => {
    const data = randomBytes(64 * 1024);
    const sink = new SpillingSink(join(dir, 'f'), 64 * 1024);
    await pipeline(Readable.from(chunksOf(data, 10_000)), sink);
    expect(sink.inline?.equals(data)).toBe(true);
  });

  it('moves everything to the file once the bytes pass the limit, in order', async () => {
    const data = randomBytes(64 * 1024 + 1);
    const sink = new SpillingSink(join(dir, 'f'), 64 * 1024);
    await pipeline(Readable.from(chunksOf(data, 5000)), sink);
    expect(sink.spilled).toBe(true);
    expect(sink.inline).toBeUndefined();
    expect(readFileSync(join(dir, 'f')).equals(data)).toBe(true);
  });

  it('with no room, writes even a tiny copy to the file', async () => {
    const data = randomBytes(10);
    const sink = new SpillingSink(join(dir, 'f'), 0);
    await pipeline(Readable.from([data]), sink);
    expect(readFileSync(join(dir, 'f')).equals(data)).toBe(true);
  });

  it('holds nothing after the source fails', async () => {
    const sink = new SpillingSink(join(dir, 'f'), 64 * 1024);
    const source = new Readable({
      read() {
        this.push(randomBytes(100));
        this.destroy(new Error('cut'));
      },
    });
    await expect(pipeline(source, sink)).rejects.toThrow('cut');
    expect(sink.inline?.length ?? 0).toBe(0);
  });

  it('flushes a large file to disk while it arrives, and still lands every byte in order', async () => {
    const data = randomBytes(5 * 1024 * 1024 + 7);
    const flushedAt: number[] = [];
    let received = 0;
    const source = Readable.from(chunksOf(data, 64 * 1024)).on('data', (c: Buffer) => (received += c.length));
    const sink = new SpillingSink(join(dir, 'f'), 64 * 1024, {
      flushEveryBytes: 1024 * 1024,
      // A flush that ends at once: how long the disk takes is not what this case is about (a
      // slow one, as under CI load, rightly lets fewer flushes start, one at a time). The
      // final, real fsync still comes from the file's own close.
      datasync: (_fd, cb) => {
        flushedAt.push(received);
        setImmediate(() => cb(null));
      },
    });
    await pipeline(source, sink);
    expect(readFileSync(join(dir, 'f')).equals(data)).toBe(true);
    // Flushes went out while bytes were still coming, about one per MiB, not only at the close.
    expect(flushedAt.length).toBeGreaterThanOrEqual(3);
    expect(flushedAt[0]).toBeLessThan(2 * 1024 * 1024);
  });

  it('fails the copy when an early flush fails (the final fsync would not report it again)', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const sink = new SpillingSink(join(dir, 'f'), 64 * 1024, {
      flushEveryBytes: 1024 * 1024,
      datasync: (_fd, cb) => {
        const err = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
        setImmediate(() => cb(err));
      },
    });
    await expect(pipeline(Readable.from(chunksOf(data, 64 * 1024)), sink)).rejects.toThrow('EIO');
  });
});
