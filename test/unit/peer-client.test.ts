import { createServer, type Server } from 'node:http';
import { PeerClient, PeerError } from '../../services/storage-node/src/peers/peer-client';
import { closeStandIn, listenOnLoopback } from '../helpers/stand-in';

/**
 * How long a node waits for a peer's answer: a pull answers only once the whole copy is stored,
 * so its wait grows with the size of the copy instead of the short idle limit every other call
 * has (a 3 GB copy used to be given up on after 30 s while the peer went on pulling it).
 */
describe('PeerClient waiting for slow answers', () => {
  let server: Server;
  let base: string;
  // A short idle limit stands in for the real 30 s; the repair rate makes a 10 kB copy a 10 s job.
  const client = new PeerClient({
    nodeId: 'test',
    secret: 'a-cluster-secret-for-tests',
    idleTimeoutMs: 200,
    transferBytesPerSec: 1_000,
  });
  const meta = {
    id: 'slowpull',
    name: 'slow.bin',
    size: 10_000,
    sha256: 'a'.repeat(64),
    contentType: 'application/octet-stream',
    createdAt: new Date().toISOString(),
  };

  beforeAll(async () => {
    // Answers everything after 3 s: fifteen times the idle limit. undici checks most timeouts on a
    // coarse clock (every 0.5-1 s), and a loaded machine delays it further: a margin of a few
    // hundred milliseconds let an answer slip in first (seen in a local .ci/run).
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () =>
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(req.url?.includes('/pull') ? '{"result":"stored","bytes":10000}' : '{"forgotten":true}');
        }, 3_000),
      );
    });
    base = await listenOnLoopback(server);
  });

  afterAll(async () => {
    await client.close();
    await closeStandIn(server);
  });

  it('waits for a pull as long as its copy can take at the repair rate', async () => {
    await expect(client.pullCopy(base, meta, ['http://127.0.0.1:1'])).resolves.toEqual({
      result: 'stored',
      bytes: 10_000,
    });
  });

  it('gives up on any other call after the idle limit', async () => {
    await expect(client.forget(base, 'slowpull', null)).rejects.toBeInstanceOf(PeerError);
  });
});
