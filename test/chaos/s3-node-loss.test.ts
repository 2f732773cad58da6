import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { TestCluster } from '../helpers/cluster';
import { makeS3Key, s3Bytes as bytesOf, s3Client, s3Failure, type S3Key } from '../helpers/s3';

/**
 * Losing a node changes nothing for S3 clients: with N = 3 and W = 2, one node SIGKILLed in the
 * middle of real work leaves every S3 request working through the two others, including a
 * multipart upload whose first part went through the node that died, and an upload that was
 * streaming when it died.
 */

const ADMIN = 'admin-key-for-s3-node-loss';
const MiB = 1024 * 1024;

describe('S3 with a node lost', () => {
  let cluster: TestCluster;
  let key: S3Key;
  const c = (i: number): S3Client => s3Client(cluster, i, key);

  beforeAll(async () => {
    cluster = await TestCluster.start({
      nodes: 3,
      s3: true,
      apiKeys: [`admin:${ADMIN}`],
      failureTimeoutMs: 3_000,
    });
    key = await makeS3Key(cluster, ADMIN, 'survivor');
    await c(0).send(new CreateBucketCommand({ Bucket: 'kept' }));
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('serves every request through the survivors, a multipart upload begun before the loss included', async () => {
    const before = new Map<string, Buffer>();
    for (let i = 0; i < 12; i++) {
      const data = randomBytes(1000 + i * 50_000);
      await c(i % 3).send(new PutObjectCommand({ Bucket: 'kept', Key: `before/${i}`, Body: data }));
      before.set(`before/${i}`, data);
    }
    const { UploadId } = await c(0).send(
      new CreateMultipartUploadCommand({ Bucket: 'kept', Key: 'spanning' }),
    );
    const part1 = randomBytes(5 * MiB);
    const p1 = await c(2).send(
      new UploadPartCommand({ Bucket: 'kept', Key: 'spanning', UploadId, PartNumber: 1, Body: part1 }),
    );

    // An upload streaming through node 0 while node 2, one of its replicas, dies under it.
    const streaming = randomBytes(24 * MiB);
    const upload = c(0).send(new PutObjectCommand({ Bucket: 'kept', Key: 'during', Body: streaming }));
    await new Promise((r) => setTimeout(r, 150));
    await cluster.kill(2, 'SIGKILL');
    const during = await s3Failure(upload);
    // Acknowledged or refused, never half there: the bytes read back are the ones sent.
    if (during === 'ok') expect((await bytesOf(c(1), 'kept', 'during')).equals(streaming)).toBe(true);
    else
      expect(await s3Failure(c(1).send(new GetObjectCommand({ Bucket: 'kept', Key: 'during' })))).toBe(
        '404 NoSuchKey',
      );

    // Before the survivors have declared it dead, and after.
    for (const [name, data] of before) expect((await bytesOf(c(1), 'kept', name)).equals(data)).toBe(true);
    await cluster.waitForState(0, cluster.node(2).id, 'dead');
    for (const [name, data] of before) expect((await bytesOf(c(0), 'kept', name)).equals(data)).toBe(true);

    const part2 = randomBytes(1 * MiB);
    const p2 = await c(1).send(
      new UploadPartCommand({ Bucket: 'kept', Key: 'spanning', UploadId, PartNumber: 2, Body: part2 }),
    );
    await c(0).send(
      new CompleteMultipartUploadCommand({
        Bucket: 'kept',
        Key: 'spanning',
        UploadId,
        MultipartUpload: {
          Parts: [
            { PartNumber: 1, ETag: p1.ETag },
            { PartNumber: 2, ETag: p2.ETag },
          ],
        },
      }),
    );
    expect((await bytesOf(c(1), 'kept', 'spanning')).equals(Buffer.concat([part1, part2]))).toBe(true);

    await c(1).send(new PutObjectCommand({ Bucket: 'kept', Key: 'after', Body: 'written after the loss' }));
    await c(0).send(new CopyObjectCommand({ Bucket: 'kept', Key: 'after-copy', CopySource: 'kept/after' }));
    await c(0).send(new DeleteObjectCommand({ Bucket: 'kept', Key: 'before/0' }));
    const listed = await c(1).send(new ListObjectsV2Command({ Bucket: 'kept' }));
    const names = (listed.Contents ?? []).map((o) => o.Key!);
    expect(names).toEqual(
      expect.arrayContaining(['after', 'after-copy', 'spanning', 'before/1', 'before/11']),
    );
    expect(names).not.toContain('before/0');
    expect((await bytesOf(c(0), 'kept', 'after-copy')).toString()).toBe('written after the loss');

    // The node comes back and serves what changed while it was away, the delete included.
    await cluster.restart(2);
    expect((await bytesOf(c(2), 'kept', 'after')).toString()).toBe('written after the loss');
    expect(await s3Failure(c(2).send(new GetObjectCommand({ Bucket: 'kept', Key: 'before/0' })))).toBe(
      '404 NoSuchKey',
    );
  });
});
