import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { TestCluster } from '../helpers/cluster';
import { download, sha256, upload } from '../helpers/client';

/**
 * Requests refused before any route runs, sent byte for byte over raw sockets to real nodes:
 * what Node's HTTP parser rejects (oversized or malformed request heads) must get the same JSON
 * error as every other refusal, and the node must carry on with nothing lost.
 */

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Sends `bytes` as they are and reads the answer until the server closes the connection (this
 * side never ends it, so an answer only comes back if the server closes by itself).
 */
function rawRequest(url: string, bytes: Buffer | string, timeoutMs = 10_000): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    // The server may cut the rest of an oversized request short; what it answered first counts.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      const split = raw.indexOf('\r\n\r\n');
      if (split < 0) return reject(new Error(`not an HTTP response: ${JSON.stringify(raw.slice(0, 200))}`));
      const [statusLine, ...lines] = raw.slice(0, split).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0),
        headers,
        body: raw.slice(split + 4),
      });
    });
    socket.write(bytes);
  });
}

function expectJsonError(res: RawResponse, status: number, code: string): { code: string; message: string } {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.headers['connection']).toBe('close');
  expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.body));
  const parsed = JSON.parse(res.body) as { error: { code: string; message: string } };
  expect(parsed.error.code).toBe(code);
  expect(typeof parsed.error.message).toBe('string');
  return parsed.error;
}

describe('requests the HTTP parser refuses', () => {
  let cluster: TestCluster;
  const kept = new Map<string, string>();

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3 });
    const data = randomBytes(50_000);
    const res = await upload(cluster.url(0), data, 'kept.bin');
    expect(res.status).toBe(201);
    kept.set(res.body.id, sha256(data));
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('answers a 32 KiB header block with a JSON 431 and closes the connection', async () => {
    const secret = 'key-that-must-not-be-logged-' + randomBytes(8).toString('hex');
    const res = await rawRequest(
      cluster.url(0),
      'GET /files HTTP/1.1\r\nHost: shoal\r\n' +
        `Authorization: Bearer ${secret}\r\n` +
        `X-Padding: ${'a'.repeat(32 * 1024)}\r\n\r\n`,
    );
    const error = expectJsonError(res, 431, 'headers_too_large');
    expect(error.message).toMatch(/16384 bytes/);
    expect(res.body).not.toContain(secret);
    expect(cluster.log(0)).not.toContain(secret);
  });

  it('answers a header block just under the limit normally', async () => {
    const res = await rawRequest(
      cluster.url(0),
      `GET /healthz HTTP/1.1\r\nHost: shoal\r\nConnection: close\r\nX-Padding: ${'a'.repeat(15 * 1024)}\r\n\r\n`,
    );
    expect(res.status).toBe(200);
  });

  it.each([
    ['a garbage request line', 'HELLO THERE\r\n\r\n'],
    ['a NUL byte in the path', 'GET /files/\0 HTTP/1.1\r\nHost: shoal\r\n\r\n'],
    ['a header name with a space', 'GET /files HTTP/1.1\r\nHost: shoal\r\nBad Header: x\r\n\r\n'],
    ['an unknown HTTP version', 'GET /files HTTP/7.3\r\nHost: shoal\r\n\r\n'],
    [
      'a bad chunk size in an upload',
      'POST /files HTTP/1.1\r\nHost: shoal\r\nContent-Type: multipart/form-data; boundary=b\r\n' +
        'Transfer-Encoding: chunked\r\n\r\nzz\r\n',
    ],
  ])('answers %s with a JSON 400', async (_what, bytes) => {
    const error = expectJsonError(await rawRequest(cluster.url(1), bytes), 400, 'bad_request');
    expect(error.message).toMatch(/^malformed HTTP request/);
  });

  it('counts the refusals, keeps serving and loses nothing', async () => {
    const metrics = await (await fetch(`${cluster.url(0)}/metrics`)).text();
    expect(metrics).toMatch(/shoal_http_parser_refusals_total\{status="431",node="node-1"\} [1-9]/);
    for (let i = 0; i < 3; i++) {
      expect((await fetch(`${cluster.url(i)}/healthz`)).status).toBe(200);
      expect(cluster.node(i).proc?.exitCode).toBeNull();
      for (const [id, sum] of kept) {
        const res = await download(cluster.url(i), id);
        expect(res.status).toBe(200);
        expect(sha256(res.data)).toBe(sum);
      }
    }
  });
});
