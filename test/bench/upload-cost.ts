import { randomBytes, randomUUID } from 'node:crypto';
import { Agent, request } from 'undici';
import { TestCluster } from '../helpers/cluster';
import { readProcStats, round } from './bench-kit';

/**
 * What one small upload costs the cluster, with the cluster's size as the variable: a node alone
 * (N=1) pays for the client's request and its own copy; each node more adds a remote replica
 * (its prepare and commit, and the coordinator's two calls to it). Run with --nodes 1, 2 and 3
 * to see where an upload's CPU goes, and before and after a change (interleaved: this machine's
 * speed drifts) to see what the change bought.
 *
 * `node dist/test/bench/upload-cost.js [--nodes 3] [--clients 16] [--seconds 6] [--kib 16]`
 * prints uploads/s and the server CPU (utime and stime of every node, /proc) per upload. Uploads
 * go round-robin to the nodes, W = min(2, N).
 */

interface Options {
  nodes: number;
  clients: number;
  seconds: number;
  kib: number;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { nodes: 3, clients: 16, seconds: 6, kib: 16 };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i]?.replace(/^--/, '');
    const value = Number(argv[i + 1]);
    if (!(name !== undefined && name in options) || !Number.isFinite(value) || value <= 0)
      throw new Error(`usage: upload-cost.js [--nodes N] [--clients C] [--seconds S] [--kib K]`);
    options[name as keyof Options] = value;
  }
  return options;
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const cluster = await TestCluster.start({
    nodes: options.nodes,
    replicas: options.nodes,
    writeQuorum: Math.min(2, options.nodes),
  });
  const agent = new Agent({ connections: options.clients * 2 });
  const boundary = `----shoal-upload-cost-${randomUUID()}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="small.bin"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  let next = 0;
  const upload = async (): Promise<void> => {
    const via = cluster.nodes[next++ % cluster.nodes.length]!;
    const res = await request(`${via.url}/files`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      body: Buffer.concat([head, randomBytes(options.kib * 1024), tail]),
    });
    const text = await res.body.text();
    if (res.statusCode !== 201) throw new Error(`POST /files answered ${res.statusCode}: ${text}`);
  };
  const run = async (ms: number): Promise<number> => {
    const end = Date.now() + ms;
    let done = 0;
    await Promise.all(
      Array.from({ length: options.clients }, async () => {
        while (Date.now() < end) {
          await upload();
          done++;
        }
      }),
    );
    return done;
  };
  try {
    await run(1_500);
    const pids = cluster.nodes.map((n) => n.proc!.pid!);
    const cpu = (): number[] => pids.map((pid) => readProcStats(pid).cpuSeconds ?? NaN);
    const before = cpu();
    const started = Date.now();
    const uploads = await run(options.seconds * 1000);
    const seconds = (Date.now() - started) / 1000;
    const perNode = cpu().map((c, i) => ((c - before[i]!) * 1000) / uploads);
    console.log(
      JSON.stringify({
        ...options,
        uploads,
        uploadsPerSecond: round(uploads / seconds, 1),
        serverCpuMsPerUpload: round(
          perNode.reduce((a, b) => a + b, 0),
          2,
        ),
        perNodeCpuMs: perNode.map((ms) => round(ms, 2)),
      }),
    );
  } finally {
    await agent.close();
    await cluster.stopAll();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
