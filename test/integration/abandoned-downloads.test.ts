import { createHash, randomBytes, randomInt } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { Agent, request } from 'undici';
import { TestCluster, waitFor } from '../helpers/cluster';
import { download, sha256, upload, type StoredFile } from '../helpers/client';

const KiB = 1024;
const MiB = 1024 * KiB;

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Where a client stops: before the answer's headers, after them, after `n` body bytes, or never. */
type HangUp =
  'before-headers' | 'after-headers' | 'mid-body' | 'one-before-end' | 'after-last-byte' | 'never';
const HANG_UPS: HangUp[] = [
  'before-headers',
  'after-headers',
  'mid-body',
  'one-before-end',
  'after-last-byte',
  'never',
];

interface Answer {
  status: number;
  /** Content-Length of the answer, -1 if its headers never arrived. */
  length: number;
  received: number;
  sha256: string;
}

/**
 * One keep-alive connection speaking raw HTTP/1.1, so that a client can hang up at any byte of
 * an answer, and at a moment of its choosing: some stop reading first and leave a moment later
 * (a closed browser tab), so the node's writes back up before the connection goes.
 */
class RawConnection {
  private onChunk: ((chunk: Buffer) => void) | undefined;
  private onClose: (() => void) | undefined;
  closed = false;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onChunk?.(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.onClose?.();
    });
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  /** GETs `path`; hangs up once `hangUpAt` body bytes arrived (0: right after the headers, -1: before them). */
  get(path: string, range: string | undefined, hangUpAt: number | undefined): Promise<Answer> {
    return new Promise((resolve) => {
      let head = Buffer.alloc(0);
      const answer: Answer = { status: 0, length: -1, received: 0, sha256: '' };
      const hash = createHash('sha256');
      const finish = (): void => {
        this.onChunk = undefined;
        this.onClose = undefined;
        answer.sha256 = hash.digest('hex');
        resolve(answer);
      };
      this.onClose = finish;
      this.onChunk = (chunk) => {
        if (answer.length < 0) {
          head = Buffer.concat([head, chunk]);
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return;
          const lines = head.subarray(0, end).toString('latin1').split('\r\n');
          answer.status = Number(lines[0]!.split(' ')[1]);
          const length = lines.find((l) => /^content-length:/i.test(l));
          answer.length = length ? Number(length.split(':')[1]) : 0;
          chunk = head.subarray(end + 4);
          if (hangUpAt === 0) return this.hangUp(finish);
        }
        const body = chunk.subarray(0, answer.length - answer.received);
        hash.update(body);
        answer.received += body.length;
        if (hangUpAt !== undefined && answer.received >= hangUpAt) return this.hangUp(finish);
        if (answer.received === answer.length) finish();
      };
      const rangeHeader = range ? `Range: ${range}\r\n` : '';
      this.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${rangeHeader}\r\n`);
      if (hangUpAt === -1) this.hangUp(finish);
    });
  }

  private hangUp(finish: () => void): void {
    this.onChunk = undefined;
    this.socket.pause();
    // Half the time at once, otherwise after a moment of not reading.
    const delayMs = Math.random() < 0.5 ? 0 : randomInt(1, 30);
    setTimeout(() => this.socket.destroy(), delayMs);
    finish();
  }

  close(): void {
    this.socket.destroy();
  }
}

interface Job {
  file: number;
  /** Asks a node that holds a copy, or one that must fetch the bytes from a peer. */
  via: 'holder' | 'proxy';
  hangUp: HangUp;
  ranged: boolean;
  client: 'raw' | 'undici';
}

/**
 * Clients that give up on downloads, at every point of an answer, under load: whatever they do,
 * no node may go down, and nobody else may notice. Both through a node that serves its own copy
 * and through one that proxies a peer's, for files read whole before they are served (up to
 * 16 MiB) and for one that is verified as it streams.
 */
describe('abandoned downloads', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    // Two copies on four nodes: half of the nodes have to fetch every file from a peer.
    cluster = await TestCluster.start({ nodes: 4, replicas: 2, failureTimeoutMs: 30_000 });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('never take a node down, and leave every later download whole', async () => {
    const sizes = [5, 16 * KiB, MiB + 17, 17 * MiB];
    const files: Array<{ data: Buffer; stored: StoredFile; holder: number; proxy: number }> = [];
    for (const size of sizes) {
      const data = randomBytes(size);
      const res = await upload(cluster.url(0), data, `abandoned-${size}.bin`);
      expect(res.status).toBe(201);
      const holders = cluster.nodes.flatMap((n, i) => (res.body.replicas.includes(n.id) ? [i] : []));
      const others = cluster.nodes.flatMap((n, i) => (res.body.replicas.includes(n.id) ? [] : [i]));
      expect(holders.length).toBe(2);
      expect(others.length).toBe(2);
      files.push({ data, stored: res.body, holder: holders[files.length % 2]!, proxy: others[0]! });
    }

    const fdsBefore = cluster.nodes.map((n) => openFds(n.proc!.pid!));
    const jobs: Job[] = [];
    for (let file = 0; file < files.length; file++) {
      // The large file costs the most to move: fewer rounds of it.
      const rounds = files[file]!.data.length > 16 * MiB ? 2 : 4;
      for (let round = 0; round < rounds; round++) {
        for (const via of ['holder', 'proxy'] as const) {
          for (const hangUp of HANG_UPS) {
            for (const ranged of [false, true]) {
              const client = jobs.length % 4 === 0 ? 'undici' : 'raw';
              jobs.push({ file, via, hangUp, ranged, client });
            }
          }
        }
      }
    }
    jobs.sort(() => Math.random() - 0.5);

    const agent = new Agent({ connections: 8, keepAliveTimeout: 10_000 });
    const problems: string[] = [];
    const started = Date.now();
    let next = 0;
    const worker = async (): Promise<void> => {
      const connections = new Map<number, RawConnection>();
      try {
        while (next < jobs.length) {
          const job = jobs[next++]!;
          const { data, stored, holder, proxy } = files[job.file]!;
          const node = job.via === 'holder' ? holder : proxy;
          // A range inside the file (its last byte short of the file's end), or none.
          const start = job.ranged ? randomInt(0, Math.max(1, data.length - 1)) : 0;
          const end = job.ranged ? randomInt(start, data.length) : data.length - 1;
          const range = job.ranged ? `bytes=${start}-${end}` : undefined;
          const length = end - start + 1;
          const hangUpAt = {
            'before-headers': -1,
            'after-headers': 0,
            'mid-body': randomInt(0, length) + 1,
            'one-before-end': length - 1,
            'after-last-byte': length,
            never: undefined,
          }[job.hangUp];
          const path = `/files/${stored.id}`;
          if (job.client === 'undici') {
            const error = await undiciGet(agent, cluster.url(node) + path, range, hangUpAt);
            if (error) problems.push(`${job.hangUp} ${range ?? ''} via ${job.via}: ${error}`);
            continue;
          }
          let connection = connections.get(node);
          if (!connection || connection.closed) {
            try {
              connection = await RawConnection.open(cluster.node(node).port);
            } catch (err) {
              problems.push(`${cluster.node(node).id} refused a connection: ${String(err)}`);
              continue;
            }
            connections.set(node, connection);
          }
          const answer = await connection.get(path, range, hangUpAt);
          if (hangUpAt !== undefined) {
            connections.delete(node);
            continue;
          }
          const expected = sha256(data.subarray(start, end + 1));
          if (answer.status !== (job.ranged ? 206 : 200) || answer.sha256 !== expected) {
            problems.push(
              `whole download via ${job.via} ${range ?? ''}: ${answer.status}, ${answer.received} of ${length} bytes`,
            );
          }
        }
      } finally {
        for (const c of connections.values()) c.close();
      }
    };
    await Promise.all(Array.from({ length: 24 }, worker));
    await agent.close();
    const loadMs = Date.now() - started;

    // A node that is going down may take a moment: a destroyed stream reports its error later.
    await new Promise((r) => setTimeout(r, 1_000));
    const states = await Promise.all(
      cluster.nodes.map(async (n, i) => {
        const log = cluster.log(i).split('\n');
        const health = await fetch(`${n.url}/healthz`, { signal: AbortSignal.timeout(5_000) }).then(
          (res) => res.status,
          (err: Error) => err.message,
        );
        return {
          node: n.id,
          exitCode: n.proc?.exitCode,
          signal: n.proc?.signalCode,
          health,
          uncaught: log.filter((l) => /uncaught|unhandled/i.test(l)).slice(0, 3),
          // No copy failed here, only clients left: there was nothing to resume from another copy.
          resumed: log.filter((l) => /resuming from another/.test(l)).slice(0, 3),
        };
      }),
    );
    expect(states).toEqual(
      cluster.nodes.map((n) => ({
        node: n.id,
        exitCode: null,
        signal: null,
        health: 200,
        uncaught: [],
        resumed: [],
      })),
    );
    expect(problems).toEqual([]);

    // Nothing held on to: open files, peers' responses and their connections are all let go.
    for (const [i, n] of cluster.nodes.entries()) {
      await waitFor(
        () => openFds(n.proc!.pid!) <= fdsBefore[i]! + 2,
        15_000,
        `${n.id} to close what the abandoned downloads opened (${fdsBefore[i]} before)`,
      );
    }

    for (const { data, stored } of files) {
      for (const n of cluster.nodes) {
        const back = await download(n.url, stored.id);
        expect({ node: n.id, status: back.status, sha256: sha256(back.data) }).toEqual({
          node: n.id,
          status: 200,
          sha256: stored.sha256,
        });
        expect(back.data.length).toBe(data.length);
      }
    }
    process.stdout.write(`abandoned downloads: ${jobs.length} requests in ${loadMs} ms\n`);
  });
});

/**
 * A GET through a shared undici Agent (pooled keep-alive connections), aborted once `hangUpAt`
 * body bytes arrived. Returns what went wrong for a download that was meant to finish.
 */
async function undiciGet(
  agent: Agent,
  url: string,
  range: string | undefined,
  hangUpAt: number | undefined,
): Promise<string | undefined> {
  const abort = new AbortController();
  if (hangUpAt === -1) setImmediate(() => abort.abort());
  try {
    const res = await request(url, {
      dispatcher: agent,
      headers: range ? { range } : {},
      signal: abort.signal,
    });
    if (hangUpAt === 0) {
      abort.abort();
      await res.body.dump().catch(() => undefined);
      return undefined;
    }
    let received = 0;
    for await (const chunk of res.body) {
      received += (chunk as Buffer).length;
      if (hangUpAt !== undefined && hangUpAt > 0 && received >= hangUpAt) {
        abort.abort();
        break;
      }
    }
    if (hangUpAt === undefined && res.statusCode !== (range ? 206 : 200)) return `answered ${res.statusCode}`;
    return undefined;
  } catch (err) {
    return abort.signal.aborted ? undefined : String(err);
  }
}
