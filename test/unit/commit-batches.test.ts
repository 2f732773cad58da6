import { createServer, type IncomingMessage, type Server } from 'node:http';
import { BatchQueue } from '../../services/storage-node/src/peers/batch-queue';
import { PeerClient } from '../../services/storage-node/src/peers/peer-client';
import { RemotePeer } from '../../services/storage-node/src/peers/remote-peer';
import { newFileId } from '../../shared/ids';
import { closeStandIn, listenOnLoopback } from '../helpers/stand-in';

describe('BatchQueue', () => {
  /** A send that answers when told to, recording each batch it was given. */
  function gatedSend() {
    const batches: number[][] = [];
    const gates: Array<() => void> = [];
    const send = (items: number[]): Promise<Array<string | Error>> => {
      batches.push(items);
      return new Promise((resolve) =>
        gates.push(() => resolve(items.map((i) => (i < 0 ? new Error(`bad ${i}`) : `done ${i}`)))),
      );
    };
    return { batches, send, open: () => gates.shift()?.() };
  }

  it('sends the first item at once, and what comes meanwhile together in the next batch', async () => {
    const { batches, send, open } = gatedSend();
    const queue = new BatchQueue(send, {
      maxBatch: 10,
      deadlineMs: 5_000,
      timeoutError: () => new Error('late'),
    });
    const results = [1, 2, 3, 4].map((i) => queue.add(i));
    expect(batches).toEqual([[1]]);
    open();
    await expect(results[0]).resolves.toBe('done 1');
    expect(batches).toEqual([[1], [2, 3, 4]]);
    open();
    await expect(Promise.all(results.slice(1))).resolves.toEqual(['done 2', 'done 3', 'done 4']);
  });

  it('fails only the item the answer says failed, and all of a batch whose send failed', async () => {
    let calls = 0;
    const queue = new BatchQueue<number, string>(
      async (items) => {
        if (++calls === 2) throw new Error('peer gone');
        return items.map((i) => (i < 0 ? new Error(`bad ${i}`) : `done ${i}`));
      },
      { maxBatch: 10, deadlineMs: 5_000, timeoutError: () => new Error('late') },
    );
    const first = [queue.add(1), queue.add(-2), queue.add(3)];
    await expect(first[0]).resolves.toBe('done 1');
    await expect(first[1]).rejects.toThrow('peer gone');
    await expect(first[2]).rejects.toThrow('peer gone');
    await expect(Promise.all([queue.add(4), queue.add(-5).catch((e: Error) => e.message)])).resolves.toEqual([
      'done 4',
      'bad -5',
    ]);
  });

  it('keeps batches within the limit', async () => {
    const { batches, send, open } = gatedSend();
    const queue = new BatchQueue(send, {
      maxBatch: 3,
      deadlineMs: 5_000,
      timeoutError: () => new Error('late'),
    });
    const results = Array.from({ length: 8 }, (_v, i) => queue.add(i));
    for (let i = 0; i < 4; i++) {
      open();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(results);
    expect(batches).toEqual([[0], [1, 2, 3], [4, 5, 6], [7]]);
  });

  it('fails an item that waits behind a hung batch at its own deadline, and never sends it', async () => {
    const { batches, send, open } = gatedSend();
    const queue = new BatchQueue(send, {
      maxBatch: 10,
      deadlineMs: 300,
      timeoutError: () => new Error('late'),
    });
    const hung = queue.add(1);
    const waiting = queue.add(2);
    await expect(waiting).rejects.toThrow('late');
    await expect(hung).rejects.toThrow('late');
    open();
    await new Promise((resolve) => setImmediate(resolve));
    const later = queue.add(3);
    open();
    await expect(later).resolves.toBe('done 3');
    expect(batches).toEqual([[1], [3]]);
  });
});

/**
 * A node of the version before batched commits and key lookups, as far as those go: it knows only
 * the one-by-one routes, and answers the batch routes 404 as any unknown route. During a rolling
 * upgrade the new nodes must still commit on it and read through it.
 */
describe('RemotePeer on a node that does not batch', () => {
  let server: Server;
  let base: string;
  const seen: string[] = [];
  const client = new PeerClient({ nodeId: 'test', secret: 'a-cluster-secret-for-tests' });

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res) => {
      req.resume();
      req.on('end', () => {
        seen.push(`${req.method} ${req.url}`);
        res.setHeader('content-type', 'application/json');
        if (req.url?.endsWith('/commit')) {
          res.end('{"result":"stored"}');
        } else if (req.url?.endsWith('/objects/versions')) {
          res.end('{"versions":[]}');
        } else {
          res.statusCode = 404;
          res.end('{"error":{"code":"not_found","message":"no such route"}}');
        }
      });
    });
    base = await listenOnLoopback(server);
  });

  afterAll(async () => {
    await client.close();
    await closeStandIn(server);
  });

  const commitFor = (id: string) => ({
    token: 'ab'.repeat(16),
    heldFor: null,
    checksums: '',
    meta: {
      id,
      name: 'f',
      size: 0,
      sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      contentType: 'application/octet-stream',
      createdAt: new Date().toISOString(),
    },
  });

  it('commits one by one after the first 404, and asks for batches no more', async () => {
    const peer = new RemotePeer('old', base, client);
    const ids = Array.from({ length: 5 }, () => newFileId());
    await expect(Promise.all(ids.map((id) => peer.commit(id, commitFor(id))))).resolves.toEqual(
      ids.map(() => 'stored'),
    );
    const more = newFileId();
    await expect(peer.commit(more, commitFor(more))).resolves.toBe('stored');
    const batchCalls = seen.filter((s) => s.endsWith('/commits'));
    const single = seen.filter((s) => s.endsWith('/commit'));
    // The first commit went alone as a batch, the other four waited for it and went as one more.
    expect(batchCalls).toHaveLength(2);
    expect(single.sort()).toEqual([...ids, more].map((id) => `POST /internal/v1/blobs/${id}/commit`).sort());
  });

  it('looks keys up one by one after the first 404, and asks for batches no more', async () => {
    const peer = new RemotePeer('old', base, client);
    const keys = ['a', 'b', 'c', 'd'];
    await expect(Promise.all(keys.map((k) => peer.objectVersions('bucket1', k)))).resolves.toEqual(
      keys.map(() => []),
    );
    await expect(peer.objectVersions('bucket1', 'e')).resolves.toEqual([]);
    expect(seen.filter((s) => s.endsWith('/objects/lookups'))).toHaveLength(2);
    expect(seen.filter((s) => s.endsWith('/objects/versions'))).toHaveLength(5);
  });
});
