import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  BLOCK_SIZE,
  BlockChecksummer,
  BlockMismatchError,
  FrameVerifier,
  blocksCovering,
  checksumsOf,
  framedLength,
} from '../../shared/blocks';
import { Sink } from '../../shared/streams';
import { CorruptBlockError, openVerified } from '../../services/storage-node/src/store/verified-read';

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('block checksums', () => {
  it('are the same however the bytes are cut into chunks', async () => {
    const data = randomBytes(3 * BLOCK_SIZE + 12_345);
    const summer = new BlockChecksummer();
    const cuts = [1, 4096, BLOCK_SIZE - 1, 2, BLOCK_SIZE + 7, 65_536];
    let at = 0;
    const chunks: Buffer[] = [];
    for (let i = 0; at < data.length; i++) {
      const n = cuts[i % cuts.length]!;
      chunks.push(data.subarray(at, at + n));
      at += n;
    }
    await pipeline(Readable.from(chunks), summer, new Sink());
    expect(summer.checksums()).toEqual(checksumsOf(data));
    expect(summer.checksums()).toHaveLength(4 * 4);
  });

  it('are empty for an empty file and one for a file under a block', () => {
    expect(checksumsOf(Buffer.alloc(0))).toHaveLength(0);
    expect(checksumsOf(Buffer.alloc(10))).toHaveLength(4);
  });
});

describe('openVerified', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-blocks-'));
  const data = randomBytes(3 * BLOCK_SIZE + 500);
  const checksums = checksumsOf(data);
  const path = join(dir, 'blob');
  writeFileSync(path, data);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    [0, data.length - 1],
    [0, 0],
    [BLOCK_SIZE - 3, BLOCK_SIZE + 3],
    [5, 2 * BLOCK_SIZE + 99],
    [data.length - 1, data.length - 1],
    [3 * BLOCK_SIZE, data.length - 1],
  ])('reads bytes %i-%i exactly', async (start, end) => {
    const body = await openVerified(path, data.length, checksums, start, end);
    expect((await readAll(body)).equals(data.subarray(start, end + 1))).toBe(true);
  });

  it('refuses a copy damaged in its first block before handing out anything', async () => {
    const bad = Buffer.from(data);
    bad[BLOCK_SIZE + 10]! ^= 1;
    const badPath = join(dir, 'bad-first');
    writeFileSync(badPath, bad);
    await expect(
      openVerified(badPath, data.length, checksums, BLOCK_SIZE + 5, BLOCK_SIZE + 20),
    ).rejects.toThrow(CorruptBlockError);
  });

  // A slow reader lets the stream read the damaged block ahead while verified ones still wait.
  it.each([
    ['a fast reader', 100, 0],
    ['a slow reader', 0, 20],
  ])(
    'stops at the boundary of a damaged block later on, after every verified byte (%s)',
    async (_reader, start, pauseMs) => {
      const bad = Buffer.from(data);
      bad[2 * BLOCK_SIZE + 10]! ^= 1;
      const badPath = join(dir, `bad-later-${pauseMs}`);
      writeFileSync(badPath, bad);
      const body = await openVerified(badPath, data.length, checksums, start, data.length - 1);
      const received: Buffer[] = [];
      await expect(
        (async () => {
          for await (const c of body) {
            received.push(c as Buffer);
            if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
          }
        })(),
      ).rejects.toThrow(CorruptBlockError);
      expect(Buffer.concat(received).equals(data.subarray(start, 2 * BLOCK_SIZE))).toBe(true);
    },
  );

  it('refuses a copy that is shorter than its checksums say', async () => {
    const shortPath = join(dir, 'short');
    writeFileSync(shortPath, data.subarray(0, BLOCK_SIZE + 10));
    await expect(
      openVerified(shortPath, data.length, checksums, BLOCK_SIZE, BLOCK_SIZE + 20),
    ).rejects.toThrow(CorruptBlockError);
  });

  it('reports a missing copy as the file system does (ENOENT)', async () => {
    await expect(openVerified(join(dir, 'gone'), 10, checksums, 0, 9)).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });
});

describe('framed blocks between nodes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-frames-'));
  const data = randomBytes(2 * BLOCK_SIZE + 777);
  const checksums = checksumsOf(data);
  const path = join(dir, 'blob');
  writeFileSync(path, data);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function frames(start: number, end: number): Promise<Buffer> {
    return readAll(await openVerified(path, data.length, checksums, start, end, true));
  }

  async function verify(wire: Buffer, start: number, end: number, cut = 9_999): Promise<Buffer> {
    const { first } = blocksCovering(start, end);
    const chunks: Buffer[] = [];
    for (let i = 0; i < wire.length; i += cut) chunks.push(wire.subarray(i, i + cut));
    const received: Buffer[] = [];
    const verifier = new FrameVerifier(data.length, first, start, end);
    await pipeline(Readable.from(chunks), verifier, async (source: AsyncIterable<Buffer>) => {
      for await (const c of source) received.push(c);
    });
    return Buffer.concat(received);
  }

  it.each([
    [0, data.length - 1],
    [10, 20],
    [BLOCK_SIZE - 5, BLOCK_SIZE + 5],
    [2 * BLOCK_SIZE, data.length - 1],
  ])('carry bytes %i-%i whole blocks at a time, and give back exactly that range', async (start, end) => {
    const wire = await frames(start, end);
    const { first, last } = blocksCovering(start, end);
    expect(wire).toHaveLength(framedLength(data.length, first, last));
    expect((await verify(wire, start, end)).equals(data.subarray(start, end + 1))).toBe(true);
  });

  it('stop at a block damaged on the way, after passing on only the blocks before it', async () => {
    const wire = await frames(0, data.length - 1);
    wire[4 + BLOCK_SIZE + 4 + 100]! ^= 1; // inside the second block
    const received: Buffer[] = [];
    const verifier = new FrameVerifier(data.length, 0, 0, data.length - 1);
    verifier.on('data', (c: Buffer) => received.push(c));
    await expect(pipeline(Readable.from([wire]), verifier)).rejects.toThrow(BlockMismatchError);
    expect(Buffer.concat(received).equals(data.subarray(0, BLOCK_SIZE))).toBe(true);
  });

  it('fail on a stream cut in the middle of a block', async () => {
    const wire = await frames(0, data.length - 1);
    await expect(verify(wire.subarray(0, wire.length - 10), 0, data.length - 1)).rejects.toThrow(
      BlockMismatchError,
    );
  });
});
