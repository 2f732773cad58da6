import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

/**
 * The yardstick for `npm run bench`: the least a file server on this machine can do. A PUT body is
 * streamed to one file on one disk and fsync'd before the answer; a GET streams the file back.
 * No multipart, no hashing, no metadata, no replicas. Shoal's figures are printed as a ratio of
 * these, so the ratio shows what replication, verification and bookkeeping cost.
 *
 * Run as its own process: `node baseline-server.js <dataDir>`. It listens on 127.0.0.1 on a free
 * port and prints `{"port": P}` as its first line of stdout once it is listening.
 */

const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

async function main(): Promise<void> {
  const dataDir = process.argv[2];
  if (!dataDir) throw new Error('usage: baseline-server <dataDir>');
  await mkdir(dataDir, { recursive: true });

  let tmpCounter = 0;
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      if (!res.headersSent) reply(res, 500, { error: { code: 'internal', message } });
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const match = /^\/files\/([^/?]+)$/.exec(req.url ?? '');
    const id = match?.[1];
    if (id === undefined || !ID_PATTERN.test(id)) {
      req.resume();
      reply(res, 404, { error: { code: 'not_found', message: 'no such route' } });
      return;
    }
    const path = join(dataDir as string, id);
    if (req.method === 'PUT') {
      // Temp file then rename, so a half-written upload never answers a GET.
      const tmp = `${path}.tmp-${process.pid}-${tmpCounter++}`;
      const fh = await open(tmp, 'w');
      try {
        // Written chunk by chunk on the handle (a handle's write stream with autoClose off never
        // reports that it is done), then fsync'd on that same handle.
        for await (const chunk of req) await fh.write(chunk as Buffer);
        await fh.sync();
      } catch (error) {
        await fh.close().catch(() => undefined);
        await rm(tmp, { force: true });
        throw error;
      }
      await fh.close();
      await rename(tmp, path);
      const { size } = await stat(path);
      reply(res, 201, { id, size });
      return;
    }
    if (req.method === 'GET') {
      req.resume();
      const info = await stat(path).catch(() => undefined);
      if (!info) {
        reply(res, 404, { error: { code: 'not_found', message: 'no such file' } });
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': info.size });
      await pipeline(createReadStream(path), res);
      return;
    }
    req.resume();
    reply(res, 405, { error: { code: 'method_not_allowed', message: 'PUT or GET' } });
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('server has no address');
  process.stdout.write(JSON.stringify({ port: address.port }) + '\n');

  const stop = (): void => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

main().catch((error: unknown) => {
  process.stderr.write(`baseline-server: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
