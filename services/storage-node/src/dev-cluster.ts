import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import build from 'pino-pretty';

export interface DevClusterOptions {
  nodes: number;
  basePort: number;
  dataDir: string;
}

/**
 * `npm start`: N real node processes on 127.0.0.1, each with its own data dir under ./data,
 * joined through each other as seeds, logs made readable. Ctrl-C stops every node cleanly.
 */
/** How far above a dev node's port its S3 listener is. */
const S3_PORT_OFFSET = 100;

export async function runDevCluster(options: DevClusterOptions): Promise<void> {
  const root = resolve(options.dataDir);
  mkdirSync(root, { recursive: true });
  const secret = devSecret(root);
  const urls = Array.from({ length: options.nodes }, (_v, i) => `http://127.0.0.1:${options.basePort + i}`);
  // Each node's S3 listener, 100 ports above its own.
  const s3Port = (i: number): number => options.basePort + S3_PORT_OFFSET + i;
  const pretty = build({
    colorize: process.stdout.isTTY,
    ignore: 'pid,hostname',
    translateTime: 'HH:MM:ss.l',
  });
  const children: ChildProcess[] = urls.map((url, i) => {
    const id = `node-${i + 1}`;
    const child = spawn(
      process.execPath,
      [
        process.argv[1]!,
        'node',
        '--host',
        '127.0.0.1',
        '--port',
        String(options.basePort + i),
        '--node-id',
        id,
        '--data-dir',
        join(root, id),
        '--advertise-url',
        url,
        '--seeds',
        urls.filter((u) => u !== url).join(','),
        '--cluster-secret',
        secret,
        '--failure-timeout-ms',
        process.env.SHOAL_FAILURE_TIMEOUT_MS ?? '10000',
        '--s3-port',
        String(s3Port(i)),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    child.stdout?.pipe(pretty, { end: false });
    return child;
  });

  process.stdout.write(`\nShoal dev cluster: ${options.nodes} nodes, data under ${root}\n`);
  process.stdout.write(`Web console: ${urls[0]}/\n`);
  process.stdout.write(`Try: curl -F file=@README.md ${urls[0]}/files\n`);
  const s3 = urls.map((_u, i) => `http://127.0.0.1:${s3Port(i)}`);
  process.stdout.write(
    `S3 endpoints (region us-east-1): ${s3.join(' ')}; a key: npx shoal key create me\n\n`,
  );

  let exiting = false;
  const exits = children.map((c) => new Promise<number | null>((res) => c.once('exit', (code) => res(code))));
  const stopAll = (): void => {
    if (exiting) return;
    exiting = true;
    process.stdout.write('\nstopping every node...\n');
    for (const c of children) c.kill('SIGTERM');
  };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);
  void Promise.race(exits).then(() => stopAll());
  const codes = await Promise.all(exits);
  process.exit(codes.every((c) => c === 0) ? 0 : 1);
}

function devSecret(root: string): string {
  const file = join(root, 'dev-cluster-secret');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const secret = randomBytes(24).toString('hex');
  writeFileSync(file, secret + '\n', { mode: 0o600 });
  return secret;
}
