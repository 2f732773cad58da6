import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

/**
 * "bare3", the ceiling `npm run bench` holds Shoal's uploads against: the least a careful store
 * that keeps 3 copies must do on this machine, with nothing else. A PUT body is streamed to 3
 * files at once (one per copy dir, standing for 3 disks), each written as a careful store does:
 * temp file, fsync, rename into place, fsync the directory; the 201 goes out once all 3 are
 * durable. A GET streams copy 1 back from disk. No multipart, no hashing, no metadata, no
 * network hop between copies.
 *
 * Run as its own process: `node baseline-server.js <dataDir> [--copies N]` (default 3). It listens
 * on 127.0.0.1 on a free port and prints `{"port": P, "dirs": [...]}` as its first line of stdout
 * once it is listening; dirs[0] holds the copies GET serves (nginx serves the same files).
 */

const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

async function main(): Promise<void> {
  const dataDir = process.argv[2];
  if (!dataDir) throw new Error('usage: baseline-server <dataDir> [--copies N]');
  const copiesAt = process.argv.indexOf('--copies');
  const copies = copiesAt > 0 ? Number(process.argv[copiesAt + 1]) : 3;
  if (!Number.isInteger(copies) || copies < 1 || copies > 8) throw new Error('--copies must be 1..8');
  const dirs = Array.from({ length: copies }, (_v, i) => join(dataDir, `copy-${i + 1}`));
  for (const dir of dirs) await mkdir(dir, { recursive: true });

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
    if (req.method === 'PUT') {
      const n = tmpCounter++;
      const tmps = dirs.map((dir) => join(dir, `.tmp-${process.pid}-${n}`));
      const handles: FileHandle[] = [];
      try {
        for (const tmp of tmps) handles.push(await open(tmp, 'w'));
        // Every chunk goes to every copy before the next is read: the slowest copy sets the pace.
        for await (const chunk of req) await Promise.all(handles.map((fh) => fh.write(chunk as Buffer)));
        await Promise.all(handles.map((fh) => fh.sync()));
      } catch (error) {
        await Promise.all(handles.map((fh) => fh.close().catch(() => undefined)));
        await Promise.all(tmps.map((tmp) => rm(tmp, { force: true })));
        throw error;
      }
      await Promise.all(handles.map((fh) => fh.close()));
      await Promise.all(
        dirs.map(async (dir, i) => {
          await rename(tmps[i]!, join(dir, id));
          await fsyncDir(dir);
        }),
      );
      const { size } = await stat(join(dirs[0]!, id));
      reply(res, 201, { id, size, copies });
      return;
    }
    if (req.method === 'GET') {
      req.resume();
      const path = join(dirs[0]!, id);
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
  process.stdout.write(JSON.stringify({ port: address.port, dirs }) + '\n');

  const stop = (): void => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
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
