import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { request } from 'undici';

/** A client that speaks only the public contract, as an outside user would. */

export interface StoredFile {
  id: string;
  name: string;
  size: number;
  sha256: string;
  contentType: string;
  createdAt: string;
  replicas: string[];
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * fetch, sent again once when the connection it reused turns out closed before any answer: the
 * node closed it as idle (its keep-alive timeout, 5 s) while this process, busy with the rest of
 * the suite, still held it in its pool, as any HTTP client can meet. Browsers send such a request
 * again too. Any other failure, or a second one, stands: a node that died does not answer the
 * second attempt either.
 */
async function fetchOnFreshConnection(url: string, init: () => RequestInit): Promise<Response> {
  try {
    return await fetch(url, init());
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    if (cause?.code !== 'UND_ERR_SOCKET' || cause.message !== 'other side closed') throw err;
    return fetch(url, init());
  }
}

export async function upload(
  baseUrl: string,
  data: Buffer,
  name = 'file.bin',
  headers: Record<string, string> = {},
): Promise<{ status: number; body: StoredFile & { error?: { code: string; message: string } } }> {
  const res = await fetchOnFreshConnection(`${baseUrl}/files`, () => {
    const form = new FormData();
    form.append('file', new Blob([data]), name);
    return { method: 'POST', body: form, headers, signal: AbortSignal.timeout(60_000) };
  });
  return {
    status: res.status,
    body: (await res.json()) as StoredFile & { error?: { code: string; message: string } },
  };
}

/** Uploads a file from disk as a streamed multipart body: nothing is held in memory. */
export async function uploadFromDisk(
  baseUrl: string,
  path: string,
  name: string,
): Promise<{ status: number; body: StoredFile }> {
  const boundary = '----shoal' + randomBytes(8).toString('hex');
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const size = statSync(path).size;
  async function* body(): AsyncGenerator<Buffer> {
    yield head;
    for await (const chunk of createReadStream(path)) yield chunk as Buffer;
    yield tail;
  }
  const res = await request(`${baseUrl}/files`, {
    method: 'POST',
    body: Readable.from(body()),
    headers: {
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': String(head.length + size + tail.length),
    },
  });
  return { status: res.statusCode, body: (await res.body.json()) as StoredFile };
}

export async function download(
  baseUrl: string,
  id: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; data: Buffer }> {
  const res = await fetchOnFreshConnection(`${baseUrl}/files/${id}`, () => ({
    headers,
    signal: AbortSignal.timeout(60_000),
  }));
  return { status: res.status, data: Buffer.from(await res.arrayBuffer()) };
}

/** Streams a download to disk and returns its sha256 and length, without holding it in memory. */
export async function downloadToDisk(
  baseUrl: string,
  id: string,
  path: string,
): Promise<{ status: number; sha256: string; bytes: number }> {
  const res = await request(`${baseUrl}/files/${id}`);
  const hash = createHash('sha256');
  let bytes = 0;
  res.body.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  await pipeline(res.body, createWriteStream(path));
  return { status: res.statusCode, sha256: hash.digest('hex'), bytes };
}

/** Writes `bytes` random bytes to `path` and returns their sha256. */
export async function writeRandomFile(path: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  let left = bytes;
  const source = new Readable({
    read() {
      if (left === 0) return this.push(null);
      const chunk = randomBytes(Math.min(left, 1 << 20));
      left -= chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  await pipeline(source, createWriteStream(path));
  return hash.digest('hex');
}

/** Resident memory of a process, in bytes, from /proc (Linux). */
export function rssOf(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Streams a body of `total` bytes to POST /files as one multipart file part, after `preamble`
 * (raw multipart text for earlier parts, with boundary BOUNDARY), honouring backpressure, and
 * stops as soon as the response arrives. Returns the status and how much had been sent then.
 */
export function streamUpload(
  url: string,
  total: number,
  preamble = '',
): Promise<{ status: number; sentBeforeAnswer: number; body: string }> {
  return new Promise((resolve, reject) => {
    const boundary = 'x' + randomBytes(6).toString('hex');
    const req = httpRequest(`${url}/files`, {
      method: 'POST',
      headers: {
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'transfer-encoding': 'chunked',
      },
    });
    let sent = 0;
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      const sentBeforeAnswer = sent;
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, sentBeforeAnswer, body }));
      res.on('error', reject);
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    req.write(preamble.replaceAll('BOUNDARY', boundary));
    req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n`);
    const chunk = randomBytes(256 * 1024);
    const pump = (): void => {
      while (!answered && sent < total) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      if (!answered) req.end(`\r\n--${boundary}--\r\n`);
    };
    pump();
  });
}
