import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { TestCluster } from '../helpers/cluster';
import { sha256, upload, type StoredFile } from '../helpers/client';
import { blobPath, flipByte as flipBits, flipInlineByte } from '../helpers/copies';

const MiB = 1024 * 1024;

/** One bit flipped: the smallest damage there is. */
const flipByte = (path: string, offset: number): void => flipBits(path, offset, 0x01);

/** A GET as a client sees it: the status, and the body only if it arrived whole. */
async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Buffer | undefined }> {
  try {
    const res = await request(url, { headers, headersTimeout: 30_000, bodyTimeout: 30_000 });
    const chunks: Buffer[] = [];
    try {
      for await (const c of res.body) chunks.push(c as Buffer);
    } catch {
      return { status: res.statusCode, body: undefined };
    }
    const body = Buffer.concat(chunks);
    const length = Number(res.headers['content-length']);
    return { status: res.statusCode, body: body.length === length ? body : undefined };
  } catch {
    return { status: 0, body: undefined };
  }
}

/**
 * The bytes you get are the bytes you stored. Copies are damaged on disk (one flipped byte) and
 * read through every path: through a node that holds no copy (proxied, resumed from copy to copy),
 * by small ranges over the damaged byte on each holder, and with every copy damaged. Each read
 * either returns exactly the stored bytes or fails where the client can tell; never a 200 or 206
 * with a wrong byte.
 */
describe('damaged copies', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    // Four nodes, three copies: one node holds no copy of a file and has to proxy it. Repair and
    // scrub stay away, so only reads meet the damage.
    cluster = await TestCluster.start({
      nodes: 4,
      args: ['--repair-interval-ms', '600000', '--scrub-interval-ms', '600000'],
    });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  async function store(size: number): Promise<{ file: StoredFile; data: Buffer }> {
    const data = randomBytes(size);
    const res = await upload(cluster.url(0), data, 'damaged.bin');
    expect(res.status).toBe(201);
    expect(res.body.replicas).toHaveLength(3);
    return { file: res.body, data };
  }

  const indexOf = (nodeId: string): number => cluster.nodes.findIndex((n) => n.id === nodeId);
  const holders = (file: StoredFile): number[] => file.replicas.map(indexOf);
  const nonHolder = (file: StoredFile): number =>
    cluster.nodes.findIndex((n) => !file.replicas.includes(n.id));

  it('serves a 24 MiB file whole and right through a node with no copy when two of three copies are damaged', async () => {
    const { file, data } = await store(24 * MiB);
    const [a, b] = holders(file);
    flipByte(blobPath(cluster.node(a!).dataDir, file.id), 3 * MiB + 17);
    flipByte(blobPath(cluster.node(b!).dataDir, file.id), 17 * MiB + 4);
    const got = await get(`${cluster.url(nonHolder(file))}/files/${file.id}`);
    expect(got.status).toBe(200);
    expect(got.body && sha256(got.body)).toBe(sha256(data));
  });

  it('answers a 17-byte range over a damaged byte with the right bytes on every node', async () => {
    const { file, data } = await store(24 * MiB);
    const [a] = holders(file);
    const at = 20 * MiB + 1000;
    flipByte(blobPath(cluster.node(a!).dataDir, file.id), at);
    for (let i = 0; i < cluster.nodes.length; i++) {
      const got = await get(`${cluster.url(i)}/files/${file.id}`, { range: `bytes=${at - 8}-${at + 8}` });
      expect([i, got.status]).toEqual([i, 206]);
      expect(got.body).toEqual(data.subarray(at - 8, at + 9));
    }
  });

  it('serves a small file right when two of its three copies are damaged, from every node', async () => {
    const { file, data } = await store(16 * 1024);
    const [a, b] = holders(file);
    // A small copy lives in SQLite beside its row: the damage is there.
    flipInlineByte(cluster.node(a!).dataDir, file.id, 100, 0x01);
    flipInlineByte(cluster.node(b!).dataDir, file.id, 16_000, 0x01);
    for (let i = 0; i < cluster.nodes.length; i++) {
      const got = await get(`${cluster.url(i)}/files/${file.id}`);
      expect([i, got.status]).toEqual([i, 200]);
      expect(got.body && sha256(got.body)).toBe(sha256(data));
    }
  });

  it('never answers with wrong bytes when every copy is damaged', async () => {
    const { file, data } = await store(6 * MiB);
    const [a, b, c] = holders(file);
    flipByte(blobPath(cluster.node(a!).dataDir, file.id), 10);
    flipByte(blobPath(cluster.node(b!).dataDir, file.id), 2 * MiB + 10);
    flipByte(blobPath(cluster.node(c!).dataDir, file.id), 5 * MiB + 10);
    for (const i of [nonHolder(file), a!]) {
      const got = await get(`${cluster.url(i)}/files/${file.id}`);
      // An error status, or a transfer cut short: the client can tell either way.
      if (got.status === 200 && got.body) expect(sha256(got.body)).toBe(sha256(data));
      expect(got.status === 200 && got.body !== undefined).toBe(false);
    }
  });
});
