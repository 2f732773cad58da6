import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { Agent, request } from 'undici';
import { BLOCK_SIZE, checksumsOf } from '../../shared/blocks';
import type { FileRecord } from '../../shared/protocol';
import { decideRead } from '../../shared/read-decision';
import { sendFile } from '../../services/storage-node/src/http/file-response';
import { freeBlocks } from '../../services/storage-node/src/store/block-pool';
import { openVerified } from '../../services/storage-node/src/store/verified-read';

/**
 * Downloads reuse their 1 MiB block buffers once the socket has taken a block's bytes. Reusing
 * one a moment too early would hand a client another file's bytes, so these downloads run side by
 * side, one of them read slowly (its blocks wait in the socket while the other turns the pool
 * over), and every byte is compared.
 */
describe('block buffers used again by downloads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-block-pool-'));
  const files = ['a', 'b', 'c'].map((name, i) => {
    const data = randomBytes(6 * BLOCK_SIZE + 1000 * i);
    writeFileSync(join(dir, name), data);
    const record: FileRecord = {
      id: name,
      name,
      size: data.length,
      sha256: createHash('sha256').update(data).digest('hex'),
      contentType: 'application/octet-stream',
      createdAt: new Date().toISOString(),
      state: 'live',
      deletedAt: null,
      heldFor: null,
    };
    return { name, data, record, checksums: checksumsOf(data) };
  });
  let server: Server;
  let base: string;
  const agent = new Agent({ connections: 8 });

  beforeAll(async () => {
    const app = express();
    app.get('/:name', async (req, res) => {
      const file = files.find((f) => f.name === req.params.name)!;
      const decision = decideRead(file.record, { range: req.get('range') });
      const body = await openVerified(
        join(dir, file.name),
        file.data.length,
        file.checksums,
        decision.start,
        decision.end,
      );
      await sendFile(res, file.record, decision, body);
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await agent.close();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  async function download(name: string, opts: { range?: string; slow?: boolean } = {}): Promise<Buffer> {
    const res = await request(`${base}/${name}`, {
      dispatcher: agent,
      headers: opts.range ? { range: opts.range } : {},
    });
    const chunks: Buffer[] = [];
    for await (const chunk of res.body) {
      chunks.push(chunk as Buffer);
      if (opts.slow) await sleep(2);
    }
    return Buffer.concat(chunks);
  }

  it('sends every file whole and right while the others reuse the buffers', async () => {
    const [a, b, c, a2, bRange] = await Promise.all([
      download('a', { slow: true }),
      download('b'),
      download('c'),
      download('a'),
      download('b', { range: `bytes=${BLOCK_SIZE - 10}-${4 * BLOCK_SIZE + 10}` }),
    ]);
    expect(a.equals(files[0]!.data)).toBe(true);
    expect(b.equals(files[1]!.data)).toBe(true);
    expect(c.equals(files[2]!.data)).toBe(true);
    expect(a2.equals(files[0]!.data)).toBe(true);
    expect(bRange.equals(files[1]!.data.subarray(BLOCK_SIZE - 10, 4 * BLOCK_SIZE + 11))).toBe(true);
    // The blocks did come back to be used again (else this test would prove nothing).
    expect(freeBlocks()).toBeGreaterThan(0);
  });

  it('keeps sending right bytes, one download after another, from a pool already in use', async () => {
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(files.map((f) => download(f.name, { slow: round === 1 })));
      got.forEach((bytes, i) => expect(bytes.equals(files[i]!.data)).toBe(true));
    }
  });
});
