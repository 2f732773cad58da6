import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { TestCluster } from '../helpers/cluster';
import { command, executable, systemDescribe } from '../helpers/requirements';
import { makeS3Key, type S3Key } from '../helpers/s3';

/**
 * The tools people move files with, unmodified and at their default settings, against three real
 * nodes: the aws CLI (Debian's, and a newer one where this machine has it, which sends CRC
 * checksums by default) and rclone. Each command is run as a person would type it.
 */

const run = promisify(execFile);
const ADMIN = 'admin-key-for-s3-client-tests';
const MiB = 1024 * 1024;

/**
 * The aws CLI the tree and multipart tests drive: a newer one (pyenv's, whose botocore sends CRC
 * checksums by default, in aws-chunked trailers) where this machine has it, else Debian's, which
 * the 1 GiB stream always uses. One CLI each keeps the suite's time in bounds.
 */
const NEWEST_AWS = existsSync('/root/.pyenv/shims/aws') ? '/root/.pyenv/shims/aws' : '/usr/bin/aws';

const describeClients = systemDescribe({
  needs: [executable('/usr/bin/aws', 'awscli (aws)', 'apt-get install awscli'), command('rclone', 'rclone')],
});

/** Every file under `dir`, by path relative to it, with its sha256. */
function treeOf(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out[relative(dir, path)] = createHash('sha256').update(readFileSync(path)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

function makeTree(dir: string): void {
  mkdirSync(join(dir, 'sub dir'), { recursive: true });
  mkdirSync(join(dir, 'ünï'), { recursive: true });
  writeFileSync(join(dir, 'a.txt'), 'plain text\n');
  writeFileSync(join(dir, 'empty'), '');
  writeFileSync(join(dir, 'sub dir', 'b+c&d%.bin'), randomBytes(3 * MiB));
  writeFileSync(join(dir, 'ünï', '😀 smile.txt'), 'unicode\n');
  // Over the aws CLI's 8 MiB multipart threshold.
  writeFileSync(join(dir, 'big.bin'), randomBytes(10 * MiB + 7));
}

describeClients('S3 clients: the aws CLI and rclone', () => {
  let cluster: TestCluster;
  let key: S3Key;
  let work: string;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, s3: true, apiKeys: [`admin:${ADMIN}`] });
    key = await makeS3Key(cluster, ADMIN, 'clients');
    work = mkdtempSync(join(tmpdir(), 'shoal-s3-clients-'));
  });

  afterAll(async () => {
    await cluster?.stopAll();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const awsEnv = (): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH,
    HOME: work,
    AWS_ACCESS_KEY_ID: key.accessKeyId,
    AWS_SECRET_ACCESS_KEY: key.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_PAGER: '',
  });

  describe(`the aws CLI (${NEWEST_AWS})`, () => {
    const cli = NEWEST_AWS;
    const bucket = 'cli';
    const aws = async (node: number, ...args: string[]): Promise<string> => {
      const { stdout } = await run(cli, ['--endpoint-url', cluster.node(node).s3Url!, ...args], {
        env: { ...awsEnv(), ...config },
        maxBuffer: 64 * MiB,
      });
      return stdout;
    };
    let config: NodeJS.ProcessEnv = {};

    it('syncs a tree up and down again through different nodes (s3 mb, sync, ls, cp, rm)', async () => {
      const up = join(work, `${bucket}-up`);
      const down = join(work, `${bucket}-down`);
      makeTree(up);
      await aws(0, 's3', 'mb', `s3://${bucket}`);
      await aws(0, 's3', 'sync', '--no-progress', up, `s3://${bucket}/tree/`);
      const listing = await aws(1, 's3', 'ls', '--recursive', `s3://${bucket}/`);
      for (const name of Object.keys(treeOf(up))) expect(listing).toContain(`tree/${name}`);
      await aws(2, 's3', 'sync', '--no-progress', `s3://${bucket}/tree/`, down);
      expect(treeOf(down)).toEqual(treeOf(up));
      // A second sync finds nothing to do.
      expect(await aws(1, 's3', 'sync', '--no-progress', up, `s3://${bucket}/tree/`)).toBe('');
      await aws(1, 's3', 'cp', '--no-progress', `s3://${bucket}/tree/big.bin`, join(work, `${bucket}-big`));
      expect(readFileSync(join(work, `${bucket}-big`)).equals(readFileSync(join(up, 'big.bin')))).toBe(true);
      // A server-side move of an object of multipart size: the CLI reads its tags first
      // (GetObjectTagging), then copies it part by part (UploadPartCopy) and deletes it.
      const moved = `s3://${bucket}/moved/big.bin`;
      await aws(2, 's3', 'mv', '--no-progress', `s3://${bucket}/tree/big.bin`, moved);
      await aws(0, 's3', 'cp', '--no-progress', moved, join(work, `${bucket}-moved`));
      const movedBytes = readFileSync(join(work, `${bucket}-moved`));
      expect(movedBytes.equals(readFileSync(join(up, 'big.bin')))).toBe(true);
      expect(await aws(1, 's3', 'ls', '--recursive', `s3://${bucket}/tree/`)).not.toContain('big.bin');
      await aws(2, 's3', 'rm', `s3://${bucket}/tree/a.txt`);
      expect(await aws(0, 's3', 'ls', '--recursive', `s3://${bucket}/`)).not.toContain('tree/a.txt');
    });

    it('runs a multipart upload step by step, and a presigned URL (s3api, s3 presign)', async () => {
      const part = randomBytes(5 * MiB);
      const partFile = join(work, `${bucket}-part`);
      writeFileSync(partFile, part);
      const created = JSON.parse(
        await aws(0, 's3api', 'create-multipart-upload', '--bucket', bucket, '--key', 'by hand/parts.bin'),
      ) as { UploadId: string };
      const etags: string[] = [];
      for (const [n, node] of [
        [1, 1],
        [2, 2],
      ] as const) {
        const out = JSON.parse(
          await aws(
            node,
            's3api',
            'upload-part',
            '--bucket',
            bucket,
            '--key',
            'by hand/parts.bin',
            '--upload-id',
            created.UploadId,
            '--part-number',
            String(n),
            '--body',
            partFile,
          ),
        ) as { ETag: string };
        etags.push(out.ETag);
      }
      const listed = JSON.parse(
        await aws(
          0,
          's3api',
          'list-parts',
          '--bucket',
          bucket,
          '--key',
          'by hand/parts.bin',
          '--upload-id',
          created.UploadId,
        ),
      ) as { Parts: Array<{ PartNumber: number; Size: number }> };
      expect(listed.Parts.map((p) => [p.PartNumber, p.Size])).toEqual([
        [1, 5 * MiB],
        [2, 5 * MiB],
      ]);
      const layout = JSON.stringify({ Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) });
      await aws(
        1,
        's3api',
        'complete-multipart-upload',
        '--bucket',
        bucket,
        '--key',
        'by hand/parts.bin',
        '--upload-id',
        created.UploadId,
        '--multipart-upload',
        layout,
      );
      const head = JSON.parse(
        await aws(2, 's3api', 'head-object', '--bucket', bucket, '--key', 'by hand/parts.bin'),
      ) as {
        ContentLength: number;
        ETag: string;
      };
      expect(head.ContentLength).toBe(10 * MiB);
      expect(head.ETag).toMatch(/-2"$/);
      const presign = ['s3', 'presign', `s3://${bucket}/by hand/parts.bin`, '--expires-in', '300'];
      let url = (await aws(0, ...presign)).trim();
      if (url.includes('AWSAccessKeyId=')) {
        // aws-cli v1 presigns with Signature Version 2 by default, which Shoal (as Garage) does
        // not take: a clear refusal, then the URL its documented setting makes.
        const v2 = await fetch(url);
        expect(v2.status).toBe(400);
        expect(await v2.text()).toContain('Signature Version 2 is not supported');
        const file = join(work, 'aws-config-s3v4');
        writeFileSync(file, '[default]\ns3 =\n    signature_version = s3v4\n');
        config = { AWS_CONFIG_FILE: file };
        url = (await aws(0, ...presign)).trim();
        config = {};
      }
      expect(url).toContain('X-Amz-Signature=');
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.concat([part, part]))).toBe(true);
    });
  });

  it('streams 1 GiB up from a pipe and down into one, in flat memory (aws s3 cp -)', async () => {
    const env = awsEnv();
    const endpoint = cluster.node(0).s3Url!;
    await run('/usr/bin/aws', ['--endpoint-url', endpoint, 's3', 'mb', 's3://streamed'], { env });
    // 1 GiB of a repeating pattern, hashed as it goes in; the CLI reads stdin of unknown length.
    const sent = createHash('sha256');
    const upload = spawn(
      '/usr/bin/aws',
      ['--endpoint-url', endpoint, 's3', 'cp', '--no-progress', '-', 's3://streamed/gib'],
      {
        env,
        stdio: ['pipe', 'ignore', 'inherit'],
      },
    );
    const block = randomBytes(MiB);
    for (let i = 0; i < 1024; i++) {
      block.writeUInt32BE(i, 0);
      sent.update(block);
      if (!upload.stdin.write(block)) await new Promise((r) => upload.stdin.once('drain', r));
    }
    upload.stdin.end();
    expect(await new Promise((r) => upload.on('close', r))).toBe(0);
    const received = createHash('sha256');
    const download = spawn(
      '/usr/bin/aws',
      ['--endpoint-url', cluster.node(2).s3Url!, 's3', 'cp', '--no-progress', 's3://streamed/gib', '-'],
      { env, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let bytes = 0;
    download.stdout.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      received.update(chunk);
    });
    expect(await new Promise((r) => download.on('close', r))).toBe(0);
    expect(bytes).toBe(1024 * MiB);
    expect(received.digest('hex')).toBe(sent.digest('hex'));
    // Every node stayed in bounded memory while the gibibyte went through it: its peak RSS.
    for (let i = 0; i < 3; i++) {
      const status = readFileSync(`/proc/${cluster.node(i).proc!.pid}/status`, 'utf8');
      const peakKiB = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]);
      expect(peakKiB * 1024).toBeLessThan(250 * MiB);
    }
  }, 240_000);

  it('copies, syncs, checks, lists, deletes and moves server-side with rclone', async () => {
    const env = {
      PATH: process.env.PATH,
      HOME: work,
      RCLONE_CONFIG_SHOAL_TYPE: 's3',
      RCLONE_CONFIG_SHOAL_PROVIDER: 'Other',
      RCLONE_CONFIG_SHOAL_ACCESS_KEY_ID: key.accessKeyId,
      RCLONE_CONFIG_SHOAL_SECRET_ACCESS_KEY: key.secretAccessKey,
      RCLONE_CONFIG_SHOAL_ENDPOINT: cluster.node(1).s3Url!,
      RCLONE_CONFIG_SHOAL_REGION: 'us-east-1',
    };
    const rclone = async (...args: string[]): Promise<string> =>
      (await run('rclone', ['--config', '/dev/null', ...args], { env, maxBuffer: 16 * MiB })).stdout;
    const src = join(work, 'rclone-src');
    makeTree(src);
    await rclone('mkdir', 'shoal:rclone');
    // Small chunks, so the 10 MiB file goes up in parts.
    await rclone('copy', '--s3-upload-cutoff', '5M', '--s3-chunk-size', '5M', src, 'shoal:rclone/copy');
    await rclone('check', src, 'shoal:rclone/copy');
    await rclone('sync', src, 'shoal:rclone/sync');
    writeFileSync(join(src, 'a.txt'), 'changed\n');
    rmSync(join(src, 'empty'));
    await rclone('sync', src, 'shoal:rclone/sync');
    await rclone('check', src, 'shoal:rclone/sync');
    const listed = await rclone('ls', 'shoal:rclone/sync');
    expect(listed).toContain('a.txt');
    expect(listed).not.toContain('empty');
    await rclone('delete', '--include', '*.txt', 'shoal:rclone/copy');
    const left = await rclone('lsf', '-R', 'shoal:rclone/copy');
    expect(left).not.toContain('a.txt');
    expect(left).toContain('big.bin');
    // A move within one remote is a server-side copy, then a delete.
    await rclone('moveto', 'shoal:rclone/sync/big.bin', 'shoal:rclone/moved/big.bin');
    expect(await rclone('lsf', 'shoal:rclone/sync')).not.toContain('big.bin');
    const back = join(work, 'rclone-back');
    await rclone('copy', 'shoal:rclone/moved', back);
    expect(readFileSync(join(back, 'big.bin')).equals(readFileSync(join(src, 'big.bin')))).toBe(true);
  });
});
