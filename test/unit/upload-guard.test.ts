import express from 'express';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { ShoalError } from '../../shared/errors';
import { feedBusboy } from '../../services/storage-node/src/files/upload';
import { UploadGuard } from '../../services/storage-node/src/files/upload-guard';

/**
 * The guard on a real HTTP server, with a stand-in parser where multer's busboy would be (it
 * can be made slow, to hold the body back): a
 * trickling upload is cut off with 408 once its window shows too few bytes, a steady one is
 * not, one held back by the node is not, and past the caps the answer is 503 with Retry-After.
 */
async function until(cond: () => boolean, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

describe('UploadGuard', () => {
  let server: Server;
  let port = 0;
  let guard: UploadGuard;
  const sockets: Socket[] = [];

  /** Bytes the stand-in parser takes: `slowParser` makes it hold the body back (backpressure). */
  let slowParser = false;

  beforeAll(async () => {
    guard = new UploadGuard({
      maxUploads: 3,
      maxUploadsPerClient: 2,
      minBytesPerSec: 2_000,
      deadlineMs: 60_000,
      rateWindowMs: 600,
    });
    const app = express();
    app.post('/files', (req, res, next) => {
      try {
        guard.admit(req, res);
      } catch (err) {
        return next(err);
      }
      const parser = new Writable({
        highWaterMark: 16,
        write: (_chunk, _enc, done) => (slowParser ? setTimeout(done, 5_000) : done()),
      });
      req.on('end', () => res.status(201).json({ ok: true }));
      feedBusboy(req, parser);
    });
    app.use((err: ShoalError, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(err.httpStatus).json({ error: { code: err.code, message: err.message } });
    });
    server = createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** Starts an upload of `total` bytes announced, sending `first` bytes now; resolves with its socket and answer. */
  function start(total: number, first: number): { socket: Socket; answer: Promise<string> } {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    socket.on('error', () => undefined);
    socket.write(
      `POST /files HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${total}\r\n\r\n`,
    );
    socket.write(Buffer.alloc(first, 1));
    let text = '';
    const answer = new Promise<string>((resolve) => {
      socket.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.includes('\r\n\r\n{')) resolve(text);
      });
      socket.on('close', () => resolve(text));
    });
    return { socket, answer };
  }

  it('cuts off an upload that trickles with 408, and lets a steady one finish', async () => {
    const slow = start(1_000_000, 100);
    const trickle = setInterval(() => slow.socket.write('x'), 50);
    const steady = start(40_000, 0);
    let sent = 0;
    const pace = setInterval(() => {
      if (sent < 40_000) {
        steady.socket.write(Buffer.alloc(4_000, 2));
        sent += 4_000;
      }
    }, 100);
    try {
      expect(await slow.answer).toMatch(/^HTTP\/1\.1 408[\s\S]*less than 2000 bytes\/s/);
      expect(await steady.answer).toMatch(/^HTTP\/1\.1 201/);
    } finally {
      clearInterval(trickle);
      clearInterval(pace);
    }
  });

  it('does not blame the client while the node holds the body back', async () => {
    slowParser = true;
    try {
      const held = start(10_000_000, 2_000_000);
      const answered = await Promise.race([
        held.answer,
        new Promise((r) => setTimeout(() => r('none'), 2_000)),
      ]);
      expect(answered).toBe('none');
      held.socket.destroy();
    } finally {
      slowParser = false;
    }
  });

  it('answers 503 with Retry-After past the per-client cap, and takes uploads again once one ends', async () => {
    // The upload the previous test held back is only seen to be gone once the stand-in parser
    // reads again (its 5 s pause): a paused socket does not notice its client hung up.
    await until(() => guard.count === 0, 10_000);
    expect(guard.count).toBe(0);
    const a = start(1_000_000, 10);
    const b = start(1_000_000, 10);
    await new Promise((r) => setTimeout(r, 100));
    const c = start(1_000_000, 10);
    const refused = await c.answer;
    expect(refused).toMatch(/^HTTP\/1\.1 503/);
    expect(refused).toMatch(/Retry-After: 5/i);
    expect(refused).toMatch(/"code":"too_many_uploads"/);
    a.socket.destroy();
    b.socket.destroy();
    await until(() => guard.count === 0);
    expect(guard.count).toBe(0);
  });
});
