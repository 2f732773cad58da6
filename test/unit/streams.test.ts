import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ByteLimiter,
  CorruptCopyError,
  HashingCounter,
  ResumingReadable,
  fanOut,
  readIfSmall,
  type ByteSource,
} from '../../shared/streams';

function collector(
  opts: { highWaterMark?: number; delayMs?: number; failAfter?: number } = {},
): Writable & { data: Buffer[] } {
  const data: Buffer[] = [];
  let seen = 0;
  const w = new Writable({
    highWaterMark: opts.highWaterMark ?? 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (opts.failAfter !== undefined && seen > opts.failAfter) return cb(new Error('sink broke'));
      data.push(chunk);
      if (opts.delayMs) setTimeout(cb, opts.delayMs);
      else cb();
    },
  }) as Writable & { data: Buffer[] };
  w.data = data;
  return w;
}

function chunks(count: number, size: number): Buffer[] {
  return Array.from({ length: count }, () => randomBytes(size));
}

describe('HashingCounter', () => {
  it('passes bytes unchanged and reports their sha256 and length', async () => {
    const parts = chunks(10, 1000);
    const hasher = new HashingCounter();
    const out = collector();
    await pipeline(Readable.from(parts), hasher, out);
    const all = Buffer.concat(parts);
    expect(Buffer.concat(out.data).equals(all)).toBe(true);
    expect(hasher.bytes).toBe(10_000);
    expect(hasher.sha256).toBe(createHash('sha256').update(all).digest('hex'));
  });
});

describe('ByteLimiter', () => {
  it('fails as soon as the limit is passed, not at the end', async () => {
    let produced = 0;
    const source = new Readable({
      read() {
        produced++;
        this.push(produced > 1000 ? null : Buffer.alloc(1024));
      },
    });
    const limiter = new ByteLimiter(10 * 1024, () => new Error('too big'));
    await expect(pipeline(source, limiter, collector())).rejects.toThrow('too big');
    expect(produced).toBeLessThan(100);
  });
});

describe('readIfSmall', () => {
  it('answers the bytes of a stream that ends within the limit', async () => {
    const parts = chunks(3, 1000);
    const whole = await readIfSmall(Readable.from(parts), 3000);
    expect(whole?.equals(Buffer.concat(parts))).toBe(true);
    expect((await readIfSmall(Readable.from([]), 10))?.length).toBe(0);
  });

  it('puts a longer stream back whole, for the next reader to have from its first byte', async () => {
    const parts = chunks(20, 1000);
    const source = new PassThrough();
    const writing = (async () => {
      for (const part of parts) {
        if (!source.write(part)) await new Promise((resolve) => source.once('drain', resolve));
      }
      source.end();
    })();
    expect(await readIfSmall(source, 2500)).toBeUndefined();
    const out = collector();
    await pipeline(source, out);
    await writing;
    expect(Buffer.concat(out.data).equals(Buffer.concat(parts))).toBe(true);
  });

  it('leaves no moment without an error listener before the next reader takes the stream', async () => {
    const source = new PassThrough();
    source.write(Buffer.alloc(200));
    const answer = readIfSmall(source, 100);
    // Destroyed before whoever awaits the answer can attach a listener of its own.
    source.destroy(new Error('client went away'));
    expect(await answer).toBeUndefined();
    await new Promise((resolve) => setImmediate(resolve));
    expect(source.destroyed).toBe(true);
  });

  it('fails with the error of a stream that fails before its end, or closes early', async () => {
    const failing = new PassThrough();
    failing.write(Buffer.alloc(10));
    setImmediate(() => failing.destroy(new Error('client went away')));
    await expect(readIfSmall(failing, 100)).rejects.toThrow('client went away');

    const cut = new PassThrough();
    setImmediate(() => cut.destroy());
    await expect(readIfSmall(cut, 100)).rejects.toThrow('closed before its end');
    await expect(readIfSmall(cut, 100)).rejects.toThrow();
  });
});

describe('fanOut', () => {
  it('copies every byte to every sink', async () => {
    const parts = chunks(50, 4096);
    const sinks = [collector(), collector(), collector()];
    const result = await fanOut(Readable.from(parts), sinks, 2);
    expect(result.completed).toEqual([0, 1, 2]);
    for (const s of sinks) expect(Buffer.concat(s.data).equals(Buffer.concat(parts))).toBe(true);
  });

  it('goes at the pace of the slowest sink instead of buffering the difference', async () => {
    let produced = 0;
    const source = new Readable({
      highWaterMark: 1024,
      read() {
        produced++;
        this.push(produced > 200 ? null : Buffer.alloc(1024));
      },
    });
    const slow = collector({ highWaterMark: 1024, delayMs: 5 });
    const fast = collector({ highWaterMark: 1024 });
    const done = fanOut(source, [fast, slow], 2);
    await new Promise((r) => setTimeout(r, 100));
    // In 100 ms the slow sink takes about 20 chunks; the source must not have run far ahead.
    expect(produced).toBeLessThan(slow.data.length + 10);
    await done;
    expect(Buffer.concat(fast.data).length).toBe(200 * 1024);
  });

  it('drops a failing sink and finishes with the others while the quorum holds', async () => {
    const parts = chunks(20, 1024);
    const sinks = [collector(), collector({ failAfter: 5000 }), collector()];
    const result = await fanOut(Readable.from(parts), sinks, 2);
    expect(result.completed).toEqual([0, 2]);
    expect(result.failed.map((f) => f.index)).toEqual([1]);
    expect(Buffer.concat(sinks[2]!.data).equals(Buffer.concat(parts))).toBe(true);
  });

  it('fails the whole copy and stops reading once fewer than the quorum remain', async () => {
    let produced = 0;
    const source = new Readable({
      read() {
        produced++;
        this.push(produced > 1000 ? null : Buffer.alloc(1024));
      },
    });
    const sinks = [collector({ failAfter: 2048 }), collector({ failAfter: 4096 }), collector()];
    await expect(fanOut(source, sinks, 2)).rejects.toThrow('sink broke');
    expect(produced).toBeLessThan(100);
    expect(sinks[2]!.destroyed).toBe(true);
  });

  it('fails with the error tooFew makes, and tells whatever feeds the source', async () => {
    const upstream = new PassThrough();
    const source = new PassThrough();
    const feed = pipeline(upstream, source);
    const sinks = [collector({ failAfter: 1024 }), collector()];
    const done = fanOut(source, sinks, 2, { tooFew: (cause) => new Error(`quorum lost: ${cause.message}`) });
    upstream.write(Buffer.alloc(4096));
    await expect(done).rejects.toThrow('quorum lost: sink broke');
    // Not "premature close": upstream learns why the copy stopped.
    await expect(feed).rejects.toThrow('quorum lost: sink broke');
    expect(upstream.destroyed).toBe(true);
  });

  it('fails when the source fails', async () => {
    const source = new PassThrough();
    const sinks = [collector(), collector()];
    const done = fanOut(source, sinks, 1);
    source.write(Buffer.alloc(10));
    source.destroy(new Error('client went away'));
    await expect(done).rejects.toThrow('client went away');
  });
});

describe('fanOut with a stalled sink', () => {
  it('drops a sink that takes nothing for the stall time while the quorum keeps up', async () => {
    const parts = chunks(64, 16 * 1024);
    const stuck = new Writable({ highWaterMark: 1024, write: () => undefined }); // never calls back
    const first = collector();
    const sinks = [first, stuck, collector()];
    const started = Date.now();
    const result = await fanOut(Readable.from(parts), sinks, 2, { stallMs: 200 });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(result.completed).toEqual([0, 2]);
    expect(result.failed.map((f) => f.index)).toEqual([1]);
    expect(Buffer.concat(first.data).equals(Buffer.concat(parts))).toBe(true);
  });

  it('keeps waiting when dropping the stalled sink would break the quorum', async () => {
    const stuck = new Writable({ highWaterMark: 1024, write: () => undefined });
    const done = fanOut(Readable.from(chunks(8, 16 * 1024)), [collector(), stuck], 2, { stallMs: 100 });
    const outcome = await Promise.race([
      done.then(() => 'settled'),
      new Promise((r) => setTimeout(() => r('waiting'), 400)),
    ]);
    expect(outcome).toBe('waiting');
    stuck.destroy(new Error('gave up'));
    await expect(done).rejects.toThrow('gave up');
  });
});

/**
 * A peer's response body as undici makes it: destroying it before its end reports an error.
 * It sends `data` in 1000-byte chunks, then ends, fails with `failWith`, or (`hold`) waits.
 */
function peerBody(data: Buffer, then: { failWith?: Error; hold?: boolean } = {}): Readable {
  let offset = 0;
  return new Readable({
    read() {
      if (offset < data.length) {
        this.push(data.subarray(offset, (offset += 1000)));
      } else if (then.failWith) {
        this.destroy(then.failWith);
      } else if (!then.hold) {
        this.push(null);
      }
    },
    destroy(err, cb) {
      cb(err ?? (this.readableEnded ? null : new Error('Request aborted')));
    },
  });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

describe('ResumingReadable', () => {
  const data = randomBytes(10_000);
  const range = { start: 0, end: data.length - 1 };
  const rest = (from: number): Promise<ByteSource> =>
    Promise.resolve({ from: 'b', body: peerBody(data.subarray(from)) });

  it('finishes a body from the next source when one fails part-way', async () => {
    const openRest = jest.fn(rest);
    const failovers: number[] = [];
    const first = peerBody(data.subarray(0, 3000), { failWith: new Error('peer died') });
    const body = new ResumingReadable({ from: 'a', body: first }, range, openRest, (_s, at) =>
      failovers.push(at),
    );
    expect((await readAll(body)).equals(data)).toBe(true);
    expect(openRest.mock.calls).toEqual([[3000]]);
    expect(failovers).toEqual([3000]);
  });

  it('resumes nothing for a reader that went away, and lets go of the source at once', async () => {
    const openRest = jest.fn(rest);
    const first = peerBody(data, { hold: true });
    const body = new ResumingReadable({ from: 'a', body: first }, range, openRest, () => undefined);
    await new Promise<void>((resolve) => body.once('data', () => resolve()));
    body.on('error', () => undefined);
    body.destroy(new Error('Premature close'));
    await new Promise((r) => setTimeout(r, 20));
    expect(first.destroyed).toBe(true);
    expect(openRest).not.toHaveBeenCalled();
  });

  it('lets go of a source that was never read when the reader goes first', async () => {
    const first = peerBody(data, { hold: true });
    const body = new ResumingReadable({ from: 'a', body: first }, range, rest, () => undefined);
    body.destroy();
    await new Promise((r) => setTimeout(r, 20));
    expect(first.destroyed).toBe(true);
  });

  it('ends the body when a source fails after its last byte, without resuming', async () => {
    const openRest = jest.fn(rest);
    const first = peerBody(data, { failWith: new Error('other side closed') });
    const body = new ResumingReadable({ from: 'a', body: first }, range, openRest, () => undefined);
    expect((await readAll(body)).equals(data)).toBe(true);
    expect(openRest).not.toHaveBeenCalled();
  });

  it('resumes from another copy at the block where a damaged copy stopped', async () => {
    const openRest = jest.fn(rest);
    const first = peerBody(data.subarray(0, 5000), { failWith: new CorruptCopyError('block 1 is damaged') });
    const body = new ResumingReadable({ from: 'a', body: first }, range, openRest, () => undefined);
    expect((await readAll(body)).equals(data)).toBe(true);
    expect(openRest).toHaveBeenCalledWith(5000);
  });

  it('fails when no source is left to finish the body', async () => {
    const first = peerBody(data.subarray(0, 5000), { failWith: new Error('peer died') });
    const body = new ResumingReadable(
      { from: 'a', body: first },
      range,
      () => Promise.resolve(undefined),
      () => undefined,
    );
    await expect(readAll(body)).rejects.toThrow('no copy could send the bytes from 5000 on');
  });
});
