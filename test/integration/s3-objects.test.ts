import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsCommand,
  ListObjectVersionsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'undici';
import { createChecksum } from '../../shared/checksums';
import { objectVersionTime } from '../../shared/ids';
import { PeerClient } from '../../services/storage-node/src/peers/peer-client';
import { RemotePeer } from '../../services/storage-node/src/peers/remote-peer';
import { UPLOAD_RECORD_TYPE } from '../../services/storage-node/src/s3/listing';
import { PART_TYPE } from '../../services/storage-node/src/s3/multipart';
import { SECRET, TestCluster } from '../helpers/cluster';
import {
  bucketIdOf,
  makeS3Key,
  s3Bytes as bytesOf,
  s3Client,
  s3Failure,
  storeKeyFile,
  type S3Key,
} from '../helpers/s3';

/**
 * S3 objects through the AWS SDK for JavaScript v3 at its default settings (CRC32 checksums sent
 * with every upload, checksums asked for and checked on every download), against three real
 * nodes: what one node stores every node serves, multipart parts may go to any node, and every
 * refusal is S3's own error.
 */

const ADMIN = 'admin-key-for-s3-object-tests';
const MiB = 1024 * 1024;

const md5 = (data: Buffer | string): string => createHash('md5').update(data).digest('hex');

describe('S3 objects through the AWS SDK', () => {
  let cluster: TestCluster;
  let alice: S3Key;
  const c = (i: number): S3Client => s3Client(cluster, i, alice);

  beforeAll(async () => {
    cluster = await TestCluster.start({
      nodes: 3,
      s3: true,
      apiKeys: [`admin:${ADMIN}`],
      args: ['--s3-domain', 's3.shoal.test'],
    });
    alice = await makeS3Key(cluster, ADMIN, 'alice');
    await c(0).send(new CreateBucketCommand({ Bucket: 'objects' }));
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('stores an object at one node that every node serves, with its headers, metadata and checksum', async () => {
    const body = 'hello, shoal';
    const put = await c(0).send(
      new PutObjectCommand({
        Bucket: 'objects',
        Key: 'notes/hello.txt',
        Body: body,
        ContentType: 'text/plain; charset=utf-8',
        CacheControl: 'max-age=60',
        ContentDisposition: 'attachment; filename="hello.txt"',
        Metadata: { author: 'alice', 'mixed-case': 'Value' },
      }),
    );
    expect(put.ETag).toBe(`"${md5(body)}"`);
    expect(put.ChecksumCRC32).toBeDefined();
    for (let i = 0; i < 3; i++) {
      const got = await c(i).send(new GetObjectCommand({ Bucket: 'objects', Key: 'notes/hello.txt' }));
      expect(await got.Body!.transformToString()).toBe(body);
      expect(got).toMatchObject({
        ETag: `"${md5(body)}"`,
        ContentType: 'text/plain; charset=utf-8',
        CacheControl: 'max-age=60',
        ContentDisposition: 'attachment; filename="hello.txt"',
        Metadata: { author: 'alice', 'mixed-case': 'Value' },
        // The SDK asked for the checksum (x-amz-checksum-mode) and checked the body against it.
        ChecksumCRC32: put.ChecksumCRC32,
      });
    }
    const head = await c(2).send(new HeadObjectCommand({ Bucket: 'objects', Key: 'notes/hello.txt' }));
    expect(head.ContentLength).toBe(body.length);
    expect(head.LastModified!.getTime()).toBeGreaterThan(Date.now() - 60_000);
  });

  it('keeps keys exactly: spaces, unicode, +, &, %, runs of /, 1024 bytes', async () => {
    const keys = [
      'with space.txt',
      'ünïcödé/日本語/😀.bin',
      'a+b=c&d',
      '100%/done',
      'runs//of///slashes',
      '/leading',
      'x'.repeat(1024),
      `${'é'.repeat(511)}z`,
    ];
    for (const [i, key] of keys.entries()) {
      await c(i % 3).send(new PutObjectCommand({ Bucket: 'objects', Key: key, Body: `body ${i}` }));
    }
    for (const [i, key] of keys.entries())
      expect((await bytesOf(c((i + 1) % 3), 'objects', key)).toString()).toBe(`body ${i}`);
    const listed = await c(1).send(new ListObjectsV2Command({ Bucket: 'objects' }));
    const names = (listed.Contents ?? []).map((o) => o.Key!);
    for (const key of keys) expect(names).toContain(key);
    // UTF-8 byte order, as S3 lists.
    const sorted = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect(names).toEqual(sorted);
    expect(
      await s3Failure(
        c(0).send(new PutObjectCommand({ Bucket: 'objects', Key: 'y'.repeat(1025), Body: 'x' })),
      ),
    ).toBe('400 KeyTooLongError');
  });

  it('takes 0 bytes, 1 byte and 5 MiB + 1 (multipart, through lib-storage)', async () => {
    await c(0).send(new PutObjectCommand({ Bucket: 'objects', Key: 'empty', Body: Buffer.alloc(0) }));
    await c(1).send(new PutObjectCommand({ Bucket: 'objects', Key: 'one', Body: 'x' }));
    expect((await bytesOf(c(2), 'objects', 'empty')).length).toBe(0);
    expect((await bytesOf(c(2), 'objects', 'one')).toString()).toBe('x');
    const data = randomBytes(5 * MiB + 1);
    const upload = new Upload({
      client: c(1),
      params: { Bucket: 'objects', Key: 'big/five-and-one', Body: data },
      partSize: 5 * MiB,
      queueSize: 2,
    });
    const done = await upload.done();
    expect(done.ETag).toMatch(/^"[0-9a-f]{32}-2"$/);
    const back = await bytesOf(c(0), 'objects', 'big/five-and-one');
    expect(back.equals(data)).toBe(true);
    const head = await c(2).send(new HeadObjectCommand({ Bucket: 'objects', Key: 'big/five-and-one' }));
    expect(head.ContentLength).toBe(5 * MiB + 1);
    expect(head.ETag).toBe(done.ETag);
    // A range across the two parts.
    const ranged = await c(2).send(
      new GetObjectCommand({
        Bucket: 'objects',
        Key: 'big/five-and-one',
        Range: `bytes=${5 * MiB - 2}-${5 * MiB}`,
      }),
    );
    expect(Buffer.from(await ranged.Body!.transformToByteArray())).toEqual(data.subarray(5 * MiB - 2));
    expect(ranged.ContentRange).toBe(`bytes ${5 * MiB - 2}-${5 * MiB}/${5 * MiB + 1}`);
  });

  it('answers ranges, conditions and response-* overrides as S3 does', async () => {
    const put = await c(0).send(new PutObjectCommand({ Bucket: 'objects', Key: 'cond', Body: '0123456789' }));
    const range = await c(1).send(
      new GetObjectCommand({ Bucket: 'objects', Key: 'cond', Range: 'bytes=2-5' }),
    );
    expect(range.$metadata.httpStatusCode).toBe(206);
    expect(await range.Body!.transformToString()).toBe('2345');
    expect(range.ChecksumCRC32).toBeUndefined(); // never the whole object's checksum on a part of it
    const get = (extra: object) =>
      c(2).send(new GetObjectCommand({ Bucket: 'objects', Key: 'cond', ...extra }));
    expect(await s3Failure(get({ IfNoneMatch: put.ETag }))).toBe('304 Unknown');
    expect(await s3Failure(get({ IfMatch: '"0000"' }))).toBe('412 PreconditionFailed');
    expect(await s3Failure(get({ IfModifiedSince: new Date(Date.now() + 3_600_000) }))).toBe('304 Unknown');
    expect(await s3Failure(get({ IfUnmodifiedSince: new Date(Date.now() - 3_600_000) }))).toBe(
      '412 PreconditionFailed',
    );
    expect(await s3Failure(get({ Range: 'bytes=100-200' }))).toBe('416 InvalidRange');
    // If-Match that holds wins over If-Unmodified-Since that does not (RFC 9110, as S3).
    expect(
      await s3Failure(get({ IfMatch: put.ETag, IfUnmodifiedSince: new Date(Date.now() - 3_600_000) })),
    ).toBe('ok');
    const overridden = await get({
      ResponseContentType: 'application/x-test',
      ResponseCacheControl: 'no-store',
    });
    expect(overridden.ContentType).toBe('application/x-test');
    expect(overridden.CacheControl).toBe('no-store');
    expect(
      await s3Failure(c(0).send(new GetObjectCommand({ Bucket: 'objects', Key: 'never-written' }))),
    ).toBe('404 NoSuchKey');
    expect(await s3Failure(c(0).send(new GetObjectCommand({ Bucket: 'no-such-bucket', Key: 'x' })))).toBe(
      '404 NoSuchBucket',
    );
  });

  it('lets the last write win, and reclaims the bytes it replaced', async () => {
    const stored = async (): Promise<number> => {
      const res = await fetch(`${cluster.url(0)}/cluster`, { headers: { authorization: `Bearer ${ADMIN}` } });
      const body = (await res.json()) as { nodes: Array<{ bytes?: number }> };
      return body.nodes.reduce((n, node) => n + (node.bytes ?? 0), 0);
    };
    const before = await stored();
    await c(0).send(
      new PutObjectCommand({ Bucket: 'objects', Key: 'overwritten', Body: randomBytes(4 * MiB) }),
    );
    expect((await stored()) - before).toBeGreaterThanOrEqual(3 * 4 * MiB);
    await c(2).send(new PutObjectCommand({ Bucket: 'objects', Key: 'overwritten', Body: 'small now' }));
    for (let i = 0; i < 3; i++)
      expect((await bytesOf(c(i), 'objects', 'overwritten')).toString()).toBe('small now');
    const deadline = Date.now() + 15_000;
    while ((await stored()) - before > MiB && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200));
    expect((await stored()) - before).toBeLessThan(MiB);
  });

  it('deletes one key or many, at every node; a bucket with objects in it stays', async () => {
    await c(0).send(new CreateBucketCommand({ Bucket: 'deletions' }));
    for (const key of ['a', 'b', 'c', 'd/e']) {
      await c(1).send(new PutObjectCommand({ Bucket: 'deletions', Key: key, Body: key }));
    }
    expect(await s3Failure(c(2).send(new DeleteBucketCommand({ Bucket: 'deletions' })))).toBe(
      '409 BucketNotEmpty',
    );
    await c(2).send(new DeleteObjectCommand({ Bucket: 'deletions', Key: 'a' }));
    for (let i = 0; i < 3; i++)
      expect(await s3Failure(c(i).send(new GetObjectCommand({ Bucket: 'deletions', Key: 'a' })))).toBe(
        '404 NoSuchKey',
      );
    // Deleting what is not there is a success, as in S3.
    await c(0).send(new DeleteObjectCommand({ Bucket: 'deletions', Key: 'a' }));
    const many = await c(0).send(
      new DeleteObjectsCommand({
        Bucket: 'deletions',
        Delete: { Objects: [{ Key: 'b' }, { Key: 'c' }, { Key: 'd/e' }, { Key: 'never' }] },
      }),
    );
    expect((many.Deleted ?? []).map((d) => d.Key).sort()).toEqual(['b', 'c', 'd/e', 'never']);
    expect(many.Errors ?? []).toEqual([]);
    for (let i = 0; i < 3; i++)
      expect((await c(i).send(new ListObjectsV2Command({ Bucket: 'deletions' }))).KeyCount).toBe(0);
    await c(1).send(new DeleteBucketCommand({ Bucket: 'deletions' }));
  });

  it('lists with prefixes, delimiters, pages and URL encoding, in both versions of ListObjects', async () => {
    await c(0).send(new CreateBucketCommand({ Bucket: 'listing' }));
    const keys = ['a/1', 'a/2', 'b/1', 'b/c/2', 'c', 'x y'];
    for (const key of keys) await c(2).send(new PutObjectCommand({ Bucket: 'listing', Key: key, Body: key }));
    const rolled = await c(1).send(new ListObjectsV2Command({ Bucket: 'listing', Delimiter: '/' }));
    expect((rolled.CommonPrefixes ?? []).map((p) => p.Prefix)).toEqual(['a/', 'b/']);
    expect((rolled.Contents ?? []).map((o) => o.Key)).toEqual(['c', 'x y']);
    const under = await c(0).send(
      new ListObjectsV2Command({ Bucket: 'listing', Prefix: 'b/', Delimiter: '/' }),
    );
    expect((under.Contents ?? []).map((o) => o.Key)).toEqual(['b/1']);
    expect((under.CommonPrefixes ?? []).map((p) => p.Prefix)).toEqual(['b/c/']);
    // One key a page, following the continuation token.
    const paged: string[] = [];
    let token: string | undefined;
    do {
      const page = await c(paged.length % 3).send(
        new ListObjectsV2Command({ Bucket: 'listing', MaxKeys: 1, ContinuationToken: token }),
      );
      paged.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    expect(paged).toEqual(keys);
    const v1 = await c(1).send(new ListObjectsCommand({ Bucket: 'listing', Marker: 'b/1', MaxKeys: 2 }));
    expect((v1.Contents ?? []).map((o) => o.Key)).toEqual(['b/c/2', 'c']);
    expect(v1.IsTruncated).toBe(true);
    const after = await c(1).send(new ListObjectsV2Command({ Bucket: 'listing', StartAfter: 'b/c/2' }));
    expect((after.Contents ?? []).map((o) => o.Key)).toEqual(['c', 'x y']);
    // The SDK leaves URL-encoded keys as they come: what S3 sends for encoding-type=url.
    const encoded = await c(0).send(
      new ListObjectsV2Command({ Bucket: 'listing', Prefix: 'x', EncodingType: 'url' }),
    );
    expect((encoded.Contents ?? []).map((o) => o.Key)).toEqual(['x%20y']);
  });

  it("lists an unversioned bucket's versions as S3 does: one each, null, the latest", async () => {
    await c(0).send(new CreateBucketCommand({ Bucket: 'versions' }));
    for (const key of ['a/1', 'a/2', 'b/1', 'b/c/2', 'c', 'x y', 'gone'])
      await c(2).send(new PutObjectCommand({ Bucket: 'versions', Key: key, Body: key }));
    // One key overwritten, one deleted.
    await c(0).send(new PutObjectCommand({ Bucket: 'versions', Key: 'c', Body: 'again' }));
    await c(2).send(new DeleteObjectCommand({ Bucket: 'versions', Key: 'gone' }));
    const all = await c(1).send(new ListObjectVersionsCommand({ Bucket: 'versions' }));
    expect((all.Versions ?? []).map((v) => [v.Key, v.VersionId, v.IsLatest])).toEqual(
      ['a/1', 'a/2', 'b/1', 'b/c/2', 'c', 'x y'].map((key) => [key, 'null', true]),
    );
    expect(all.Versions?.find((v) => v.Key === 'c')?.Size).toBe(5);
    expect(all.DeleteMarkers ?? []).toEqual([]);
    const rolled = await c(2).send(
      new ListObjectVersionsCommand({ Bucket: 'versions', Prefix: 'b/', Delimiter: '/' }),
    );
    expect((rolled.Versions ?? []).map((v) => v.Key)).toEqual(['b/1']);
    expect((rolled.CommonPrefixes ?? []).map((p) => p.Prefix)).toEqual(['b/c/']);
    const paged: string[] = [];
    let marker: { KeyMarker?: string; VersionIdMarker?: string } = {};
    for (;;) {
      const page = await c(paged.length % 3).send(
        new ListObjectVersionsCommand({ Bucket: 'versions', MaxKeys: 2, ...marker }),
      );
      paged.push(...(page.Versions ?? []).map((v) => v.Key!));
      if (!page.IsTruncated) break;
      marker = { KeyMarker: page.NextKeyMarker, VersionIdMarker: page.NextVersionIdMarker };
    }
    expect(paged).toEqual(['a/1', 'a/2', 'b/1', 'b/c/2', 'c', 'x y']);
    expect(
      await s3Failure(
        c(0).send(
          new ListObjectVersionsCommand({ Bucket: 'versions', KeyMarker: 'a/1', VersionIdMarker: 'v2' }),
        ),
      ),
    ).toBe('400 InvalidArgument');
  });

  it('copies objects, keeping or replacing their metadata', async () => {
    await c(0).send(
      new PutObjectCommand({
        Bucket: 'objects',
        Key: 'original',
        Body: 'copy me',
        ContentType: 'text/x-original',
        Metadata: { kept: 'yes' },
      }),
    );
    const copied = await c(1).send(
      new CopyObjectCommand({ Bucket: 'objects', Key: 'copy', CopySource: 'objects/original' }),
    );
    expect(copied.CopyObjectResult?.ETag).toBe(`"${md5('copy me')}"`);
    const copy = await c(2).send(new GetObjectCommand({ Bucket: 'objects', Key: 'copy' }));
    expect(await copy.Body!.transformToString()).toBe('copy me');
    expect(copy).toMatchObject({ ContentType: 'text/x-original', Metadata: { kept: 'yes' } });
    await c(2).send(
      new CopyObjectCommand({
        Bucket: 'objects',
        Key: 'original',
        CopySource: 'objects/original',
        MetadataDirective: 'REPLACE',
        ContentType: 'text/x-replaced',
        Metadata: { replaced: 'yes' },
      }),
    );
    const replaced = await c(0).send(new HeadObjectCommand({ Bucket: 'objects', Key: 'original' }));
    expect(replaced).toMatchObject({ ContentType: 'text/x-replaced', Metadata: { replaced: 'yes' } });
    expect(
      await s3Failure(
        c(0).send(
          new CopyObjectCommand({ Bucket: 'objects', Key: 'original', CopySource: 'objects/original' }),
        ),
      ),
    ).toBe('400 InvalidRequest');
    expect(
      await s3Failure(
        c(0).send(
          new CopyObjectCommand({ Bucket: 'objects', Key: 'x', CopySource: 'objects/never-written' }),
        ),
      ),
    ).toBe('404 NoSuchKey');
  });

  it('completes a multipart upload whose parts went to three different nodes', async () => {
    const source = randomBytes(6 * MiB);
    await c(0).send(new PutObjectCommand({ Bucket: 'objects', Key: 'part-source', Body: source }));
    const { UploadId } = await c(0).send(
      new CreateMultipartUploadCommand({
        Bucket: 'objects',
        Key: 'assembled',
        ContentType: 'application/x-parts',
      }),
    );
    const part1 = randomBytes(5 * MiB);
    const part2 = randomBytes(5 * MiB);
    const p1 = await c(1).send(
      new UploadPartCommand({ Bucket: 'objects', Key: 'assembled', UploadId, PartNumber: 1, Body: part1 }),
    );
    const p2 = await c(2).send(
      new UploadPartCommand({ Bucket: 'objects', Key: 'assembled', UploadId, PartNumber: 2, Body: part2 }),
    );
    const p3 = await c(0).send(
      new UploadPartCopyCommand({
        Bucket: 'objects',
        Key: 'assembled',
        UploadId,
        PartNumber: 3,
        CopySource: 'objects/part-source',
        CopySourceRange: 'bytes=1000-1999',
      }),
    );
    const parts = await c(2).send(new ListPartsCommand({ Bucket: 'objects', Key: 'assembled', UploadId }));
    expect((parts.Parts ?? []).map((p) => [p.PartNumber, p.Size])).toEqual([
      [1, 5 * MiB],
      [2, 5 * MiB],
      [3, 1000],
    ]);
    const uploads = await c(1).send(new ListMultipartUploadsCommand({ Bucket: 'objects' }));
    expect((uploads.Uploads ?? []).map((u) => [u.Key, u.UploadId])).toContainEqual(['assembled', UploadId]);
    const done = await c(1).send(
      new CompleteMultipartUploadCommand({
        Bucket: 'objects',
        Key: 'assembled',
        UploadId,
        MultipartUpload: {
          Parts: [
            { PartNumber: 1, ETag: p1.ETag },
            { PartNumber: 2, ETag: p2.ETag },
            { PartNumber: 3, ETag: p3.CopyPartResult?.ETag },
          ],
        },
      }),
    );
    const etags = [p1.ETag, p2.ETag, p3.CopyPartResult?.ETag].map((e) => Buffer.from(e!.slice(1, -1), 'hex'));
    expect(done.ETag).toBe(`"${md5(Buffer.concat(etags))}-3"`);
    const whole = Buffer.concat([part1, part2, source.subarray(1000, 2000)]);
    for (let i = 0; i < 3; i++)
      expect((await bytesOf(c(i), 'objects', 'assembled')).equals(whole)).toBe(true);
    const head = await c(0).send(new HeadObjectCommand({ Bucket: 'objects', Key: 'assembled' }));
    expect(head).toMatchObject({ ContentType: 'application/x-parts', ContentLength: whole.length });
    const left = await c(2).send(new ListMultipartUploadsCommand({ Bucket: 'objects' }));
    expect((left.Uploads ?? []).map((u) => u.UploadId)).not.toContain(UploadId);
  });

  it("reads one part of an object by its number, as the SDKs' part-wise downloads do", async () => {
    // 'assembled' is the object of the test above: 5 MiB, 5 MiB and 1000 bytes.
    const whole = await bytesOf(c(0), 'objects', 'assembled');
    const second = await c(1).send(
      new GetObjectCommand({ Bucket: 'objects', Key: 'assembled', PartNumber: 2 }),
    );
    expect({ range: second.ContentRange, parts: second.PartsCount, length: second.ContentLength }).toEqual({
      range: `bytes ${5 * MiB}-${10 * MiB - 1}/${whole.length}`,
      parts: 3,
      length: 5 * MiB,
    });
    const bytes = Buffer.from(await second.Body!.transformToByteArray());
    expect(bytes.equals(whole.subarray(5 * MiB, 10 * MiB))).toBe(true);
    const third = await c(2).send(
      new HeadObjectCommand({ Bucket: 'objects', Key: 'assembled', PartNumber: 3 }),
    );
    expect({ length: third.ContentLength, parts: third.PartsCount }).toEqual({ length: 1000, parts: 3 });
    const get = (Key: string, PartNumber: number, Range?: string) =>
      c(0).send(new GetObjectCommand({ Bucket: 'objects', Key, PartNumber, ...(Range ? { Range } : {}) }));
    expect(await s3Failure(get('assembled', 4))).toBe('416 InvalidPartNumber');
    expect(await s3Failure(get('assembled', 1, 'bytes=0-9'))).toBe('400 InvalidRequest');
    expect(await s3Failure(get('assembled', 10_001))).toBe('400 InvalidArgument');
    // A single-part object is its own part 1.
    const one = await get('part-source', 1);
    expect(one.ContentLength).toBe(6 * MiB);
    await one.Body!.transformToByteArray();
    expect(await s3Failure(get('part-source', 2))).toBe('416 InvalidPartNumber');
  });

  it('keeps the FULL_OBJECT CRC of a multipart object, combined from its parts, and checks the one sent', async () => {
    const part1 = randomBytes(5 * MiB);
    const part2 = randomBytes(1_000);
    const whole = Buffer.concat([part1, part2]);
    for (const [algorithm, field] of [
      ['crc32', 'ChecksumCRC32'],
      ['crc64nvme', 'ChecksumCRC64NVME'],
    ] as const) {
      const Key = `full-object-${algorithm}`;
      const sum = createChecksum(algorithm);
      sum.update(whole);
      const expected = sum.digest().toString('base64');
      const { UploadId, ChecksumType } = await c(0).send(
        new CreateMultipartUploadCommand({
          Bucket: 'objects',
          Key,
          ChecksumAlgorithm: algorithm.toUpperCase() as 'CRC32' | 'CRC64NVME',
          ChecksumType: 'FULL_OBJECT',
        }),
      );
      expect(ChecksumType).toBe('FULL_OBJECT');
      const parts: CompletedPart[] = [];
      for (const [i, Body] of [part1, part2].entries()) {
        const sent = await c(i + 1).send(
          new UploadPartCommand({
            Bucket: 'objects',
            Key,
            UploadId,
            PartNumber: i + 1,
            Body,
            ChecksumAlgorithm: algorithm.toUpperCase() as 'CRC32' | 'CRC64NVME',
          }),
        );
        parts.push({ PartNumber: i + 1, ETag: sent.ETag, [field]: sent[field] });
      }
      const complete = (claim: string, size = whole.length) =>
        c(2).send(
          new CompleteMultipartUploadCommand({
            Bucket: 'objects',
            Key,
            UploadId,
            ChecksumType: 'FULL_OBJECT',
            [field]: claim,
            MpuObjectSize: size,
            MultipartUpload: { Parts: parts },
          }),
        );
      // A CRC or a size that is not the object's: refused, and nothing is there.
      const wrong = Buffer.from(expected, 'base64');
      wrong.writeUInt8(wrong[0]! ^ 1, 0);
      expect(await s3Failure(complete(wrong.toString('base64')))).toBe('400 BadDigest');
      expect(await s3Failure(complete(expected, whole.length + 1))).toBe('400 InvalidRequest');
      expect(await s3Failure(c(0).send(new HeadObjectCommand({ Bucket: 'objects', Key })))).toBe(
        '404 NotFound',
      );
      const done = await complete(expected);
      expect({ sum: done[field], type: done.ChecksumType }).toEqual({ sum: expected, type: 'FULL_OBJECT' });
      const head = await c(1).send(
        new HeadObjectCommand({ Bucket: 'objects', Key, ChecksumMode: 'ENABLED' }),
      );
      expect({ sum: head[field], type: head.ChecksumType }).toEqual({ sum: expected, type: 'FULL_OBJECT' });
      expect((await bytesOf(c(0), 'objects', Key)).equals(whole)).toBe(true);
    }
    // S3's rules for the type: no FULL_OBJECT for the SHAs, no COMPOSITE for CRC-64/NVME.
    const create = (ChecksumAlgorithm: 'SHA256' | 'CRC64NVME', ChecksumType: 'FULL_OBJECT' | 'COMPOSITE') =>
      c(0).send(
        new CreateMultipartUploadCommand({
          Bucket: 'objects',
          Key: 'refused',
          ChecksumAlgorithm,
          ChecksumType,
        }),
      );
    expect(await s3Failure(create('SHA256', 'FULL_OBJECT'))).toBe('400 InvalidRequest');
    expect(await s3Failure(create('CRC64NVME', 'COMPOSITE'))).toBe('400 InvalidRequest');
  });

  it('keeps an object whole when its upload is completed twice at once (a client retrying)', async () => {
    const keys = ['twice-a', 'twice-b', 'twice-c'];
    const bodies = keys.map(() => randomBytes(100_000));
    await Promise.all(
      keys.map(async (key, k) => {
        const { UploadId } = await c(0).send(
          new CreateMultipartUploadCommand({ Bucket: 'objects', Key: key }),
        );
        const { ETag } = await c(0).send(
          new UploadPartCommand({ Bucket: 'objects', Key: key, UploadId, PartNumber: 1, Body: bodies[k] }),
        );
        const complete = (i: number) =>
          c(i).send(
            new CompleteMultipartUploadCommand({
              Bucket: 'objects',
              Key: key,
              UploadId,
              MultipartUpload: { Parts: [{ PartNumber: 1, ETag }] },
            }),
          );
        const answers = await Promise.allSettled([complete(1), complete(2)]);
        expect(answers.some((a) => a.status === 'fulfilled')).toBe(true);
      }),
    );
    // The older of the two completed versions is reclaimed in the background, its part (the
    // newer one's too) left alone.
    await new Promise((r) => setTimeout(r, 1_500));
    for (const [k, key] of keys.entries())
      for (let i = 0; i < 3; i++) expect((await bytesOf(c(i), 'objects', key)).equals(bodies[k]!)).toBe(true);
  });

  it("refuses a multipart completion that does not fit S3's rules, and forgets an aborted upload", async () => {
    const key = 'refused-multipart';
    const { UploadId } = await c(0).send(new CreateMultipartUploadCommand({ Bucket: 'objects', Key: key }));
    const small = await c(1).send(
      new UploadPartCommand({ Bucket: 'objects', Key: key, UploadId, PartNumber: 1, Body: 'too small' }),
    );
    const last = await c(2).send(
      new UploadPartCommand({ Bucket: 'objects', Key: key, UploadId, PartNumber: 2, Body: 'last' }),
    );
    const complete = (Parts: Array<{ PartNumber: number; ETag: string | undefined }>) =>
      c(0).send(
        new CompleteMultipartUploadCommand({
          Bucket: 'objects',
          Key: key,
          UploadId,
          MultipartUpload: { Parts },
        }),
      );
    expect(await s3Failure(complete([{ PartNumber: 1, ETag: '"00000000000000000000000000000000"' }]))).toBe(
      '400 InvalidPart',
    );
    expect(
      await s3Failure(
        complete([
          { PartNumber: 2, ETag: last.ETag },
          { PartNumber: 1, ETag: small.ETag },
        ]),
      ),
    ).toBe('400 InvalidPartOrder');
    expect(
      await s3Failure(
        complete([
          { PartNumber: 1, ETag: small.ETag },
          { PartNumber: 2, ETag: last.ETag },
        ]),
      ),
    ).toBe('400 EntityTooSmall');
    await c(1).send(new AbortMultipartUploadCommand({ Bucket: 'objects', Key: key, UploadId }));
    expect(
      await s3Failure(
        c(2).send(
          new UploadPartCommand({ Bucket: 'objects', Key: key, UploadId, PartNumber: 3, Body: 'late' }),
        ),
      ),
    ).toBe('404 NoSuchUpload');
    expect(await s3Failure(c(0).send(new ListPartsCommand({ Bucket: 'objects', Key: key, UploadId })))).toBe(
      '404 NoSuchUpload',
    );
    expect(await s3Failure(c(0).send(new GetObjectCommand({ Bucket: 'objects', Key: key })))).toBe(
      '404 NoSuchKey',
    );
  });

  it('serves presigned URLs for PUT and GET, until they expire', async () => {
    const putUrl = await getSignedUrl(c(0), new PutObjectCommand({ Bucket: 'objects', Key: 'presigned' }), {
      expiresIn: 300,
    });
    const put = await fetch(putUrl, { method: 'PUT', body: 'sent with a presigned URL' });
    expect(put.status).toBe(200);
    const getUrl = await getSignedUrl(c(1), new GetObjectCommand({ Bucket: 'objects', Key: 'presigned' }), {
      expiresIn: 1,
    });
    const got = await fetch(getUrl);
    expect(await got.text()).toBe('sent with a presigned URL');
    await new Promise((r) => setTimeout(r, 2_100));
    const late = await fetch(getUrl);
    expect(late.status).toBe(403);
    expect(await late.text()).toContain('<Code>AccessDenied</Code>');
  });

  it('addresses a bucket by the Host header under --s3-domain (virtual-host style)', async () => {
    const signer = new SignatureV4({
      credentials: alice,
      region: 'us-east-1',
      service: 's3',
      sha256: Hash.bind(null, 'sha256'),
      uriEscapePath: false,
    });
    const port = Number(new URL(cluster.node(1).s3Url!).port);
    const send = async (method: string, path: string, body?: string) => {
      const host = `objects.s3.shoal.test:${port}`;
      const signed = await signer.sign({
        method,
        protocol: 'http:',
        hostname: 'objects.s3.shoal.test',
        port,
        path,
        query: {},
        headers: {
          host,
          'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
          ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }),
        },
      });
      // The name resolves nowhere: the request goes to the node, with the Host that names the bucket.
      return request(`http://127.0.0.1:${port}${path}`, {
        method: method as 'GET',
        headers: signed.headers,
        body,
      });
    };
    const put = await send('PUT', '/virtual/hosted.txt', 'by host');
    expect(put.statusCode).toBe(200);
    await put.body.dump();
    const got = await send('GET', '/virtual/hosted.txt');
    expect(got.statusCode).toBe(200);
    expect(await got.body.text()).toBe('by host');
    // The same object, path style, through another node.
    expect((await bytesOf(c(2), 'objects', 'virtual/hosted.txt')).toString()).toBe('by host');
  });

  it('refuses writes that ask for what it does not do (tags, encryption, locks, sharing), and keeps nothing', async () => {
    const put = (Key: string, extra: Partial<PutObjectCommandInput>) =>
      s3Failure(c(0).send(new PutObjectCommand({ Bucket: 'objects', Key, Body: 'x', ...extra })));
    expect(await put('tagged', { Tagging: 'team=a' })).toBe('501 NotImplemented');
    expect(await put('encrypted', { ServerSideEncryption: 'AES256' })).toBe('501 NotImplemented');
    expect(
      await put('locked', {
        ObjectLockMode: 'COMPLIANCE',
        ObjectLockRetainUntilDate: new Date(Date.now() + 86_400_000),
      }),
    ).toBe('501 NotImplemented');
    expect(await put('shared', { ACL: 'public-read' })).toBe('501 NotImplemented');
    expect(await put('cold', { StorageClass: 'GLACIER' })).toBe('400 InvalidStorageClass');
    expect(
      await s3Failure(
        c(1).send(
          new CreateMultipartUploadCommand({
            Bucket: 'objects',
            Key: 'encrypted',
            ServerSideEncryption: 'AES256',
          }),
        ),
      ),
    ).toBe('501 NotImplemented');
    expect(
      await s3Failure(
        c(2).send(new CreateBucketCommand({ Bucket: 'locked-bucket', ObjectLockEnabledForBucket: true })),
      ),
    ).toBe('501 NotImplemented');
    for (const Key of ['tagged', 'encrypted', 'locked', 'shared', 'cold'])
      expect(await s3Failure(c(1).send(new HeadObjectCommand({ Bucket: 'objects', Key })))).toBe(
        '404 NotFound',
      );
    // What Shoal does anyway is taken: a private ACL, the STANDARD class.
    expect(await put('plain', { ACL: 'private', StorageClass: 'STANDARD' })).toBe('ok');
  });

  it('refuses bodies that do not match what their request declared, and keeps nothing of them', async () => {
    const wrongMd5 = await s3Failure(
      c(0).send(
        new PutObjectCommand({
          Bucket: 'objects',
          Key: 'bad-md5',
          Body: 'payload',
          ContentMD5: Buffer.from(md5('other'), 'hex').toString('base64'),
        }),
      ),
    );
    expect(wrongMd5).toBe('400 BadDigest');
    const wrongCrc = await s3Failure(
      c(1).send(
        new PutObjectCommand({
          Bucket: 'objects',
          Key: 'bad-crc',
          Body: 'payload',
          ChecksumCRC32: 'AAAAAA==',
        }),
      ),
    );
    expect(wrongCrc).toBe('400 BadDigest');
    for (const key of ['bad-md5', 'bad-crc'])
      expect(await s3Failure(c(2).send(new HeadObjectCommand({ Bucket: 'objects', Key: key })))).toBe(
        '404 NotFound',
      );
  });
});

describe('abandoned multipart uploads, and what crashes leave', () => {
  let cluster: TestCluster;
  let key: S3Key;
  const client = new PeerClient({ nodeId: 'fault-injection', secret: SECRET });
  /** Every node through the internal API: to place files as a crash leaves them, and to see who holds one. */
  let peers: RemotePeer[];

  beforeAll(async () => {
    cluster = await TestCluster.start({
      nodes: 3,
      s3: true,
      apiKeys: [`admin:${ADMIN}`],
      args: ['--s3-upload-expiry-ms', '3000'],
    });
    key = await makeS3Key(cluster, ADMIN, 'forgetful');
    peers = cluster.nodes.map((n, i) => new RemotePeer(n.id, cluster.url(i), client));
  });

  /** How many nodes hold a live copy of a file. */
  const holders = async (id: string): Promise<number> =>
    (await Promise.all(peers.map((p) => p.record(id)))).filter((r) => r?.state === 'live').length;

  afterAll(async () => {
    await client.close();
    await cluster?.stopAll();
  });

  it('are removed, parts and all, once they are older than --s3-upload-expiry-ms', async () => {
    const c = (i: number) => s3Client(cluster, i, key);
    await c(0).send(new CreateBucketCommand({ Bucket: 'uploads' }));
    const { UploadId } = await c(0).send(
      new CreateMultipartUploadCommand({ Bucket: 'uploads', Key: 'left' }),
    );
    await c(1).send(
      new UploadPartCommand({
        Bucket: 'uploads',
        Key: 'left',
        UploadId,
        PartNumber: 1,
        Body: randomBytes(MiB),
      }),
    );
    const listed = await c(2).send(new ListMultipartUploadsCommand({ Bucket: 'uploads' }));
    expect((listed.Uploads ?? []).map((u) => u.UploadId)).toEqual([UploadId]);
    const stored = async (): Promise<number> => {
      const res = await fetch(`${cluster.url(0)}/cluster`, { headers: { authorization: `Bearer ${ADMIN}` } });
      const body = (await res.json()) as { nodes: Array<{ bytes?: number }> };
      return body.nodes.reduce((n, node) => n + (node.bytes ?? 0), 0);
    };
    expect(await stored()).toBeGreaterThanOrEqual(3 * MiB);
    const deadline = Date.now() + 20_000;
    while ((await stored()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    expect(await stored()).toBe(0);
    expect((await c(1).send(new ListMultipartUploadsCommand({ Bucket: 'uploads' }))).Uploads ?? []).toEqual(
      [],
    );
    expect(
      await s3Failure(c(0).send(new ListPartsCommand({ Bucket: 'uploads', Key: 'left', UploadId }))),
    ).toBe('404 NoSuchUpload');
    // The bucket holds nothing now, and can go.
    await c(2).send(new DeleteBucketCommand({ Bucket: 'uploads' }));
  });

  it('removes what a crash left: replaced versions, and the parts of an upload whose record went', async () => {
    const c = (i: number) => s3Client(cluster, i, key);
    await c(0).send(new CreateBucketCommand({ Bucket: 'leftovers' }));
    const current = randomBytes(1_000);
    await c(0).send(new PutObjectCommand({ Bucket: 'leftovers', Key: 'kept', Body: current }));
    const bucket = bucketIdOf(cluster.node(0).dataDir, 'kept');
    const [stored] = await peers[0]!.objectVersions(bucket, 'kept');

    // A version older than the current one, on every home, as if the reclaim after the current
    // one's answer had died with its coordinator.
    const replaced = randomBytes(2_000);
    const left = await storeKeyFile(peers, { bucket, key: 'kept' }, replaced, {
      at: objectVersionTime(stored!.id) - 60_000,
      contentType: 'application/octet-stream',
      attrs: { etag: md5(replaced), type: 'application/octet-stream' },
    });
    // An upload whose record was deleted but not its part: an abort that died half-way.
    const { UploadId } = await c(1).send(
      new CreateMultipartUploadCommand({ Bucket: 'leftovers', Key: 'parts' }),
    );
    await c(2).send(
      new UploadPartCommand({
        Bucket: 'leftovers',
        Key: 'parts',
        UploadId,
        PartNumber: 1,
        Body: randomBytes(MiB),
      }),
    );
    const files = await peers[0]!.objectVersions(bucket, 'parts', { upload: UploadId });
    const record = files.find((f) => f.contentType === UPLOAD_RECORD_TYPE)!;
    const part = files.find((f) => f.contentType === PART_TYPE)!;
    for (const peer of peers) await peer.delete(record.id, new Date().toISOString());
    // And a completed multipart object, whose parts have no record either but must stay.
    const whole = randomBytes(5 * MiB + 1);
    await new Upload({ client: c(2), params: { Bucket: 'leftovers', Key: 'whole', Body: whole } }).done();

    expect((await bytesOf(c(1), 'leftovers', 'kept')).equals(current)).toBe(true);
    expect(await holders(left.id)).toBe(3);
    expect(await holders(part.id)).toBe(3);

    const deadline = Date.now() + 20_000;
    while ((await holders(left.id)) + (await holders(part.id)) > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 250));
    expect({ replaced: await holders(left.id), part: await holders(part.id) }).toEqual({
      replaced: 0,
      part: 0,
    });
    expect(await holders(stored!.id)).toBe(3);
    for (let i = 0; i < 3; i++) {
      expect((await bytesOf(c(i), 'leftovers', 'kept')).equals(current)).toBe(true);
      expect((await bytesOf(c(i), 'leftovers', 'whole')).equals(whole)).toBe(true);
    }
  });

  it('removes the objects of a deleted bucket that a race with its deletion left', async () => {
    const c = (i: number) => s3Client(cluster, i, key);
    await c(0).send(new CreateBucketCommand({ Bucket: 'short-lived' }));
    await c(0).send(new PutObjectCommand({ Bucket: 'short-lived', Key: 'x', Body: 'x' }));
    const bucket = bucketIdOf(cluster.node(0).dataDir, 'x');
    await c(1).send(new DeleteObjectCommand({ Bucket: 'short-lived', Key: 'x' }));
    const [marker] = await peers[0]!.objectVersions(bucket, 'x');
    await c(2).send(new DeleteBucketCommand({ Bucket: 'short-lived' }));
    // A PutObject that began before the deletion and ended after it.
    const late = Buffer.from('written as the bucket went');
    const raced = await storeKeyFile(peers, { bucket, key: 'late' }, late, {
      at: Date.now(),
      contentType: 'text/plain',
      attrs: { etag: md5(late), type: 'text/plain' },
    });
    expect(await holders(raced.id)).toBe(3);
    expect(await holders(marker!.id)).toBe(3);

    const deadline = Date.now() + 20_000;
    while ((await holders(raced.id)) + (await holders(marker!.id)) > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 250));
    expect({ raced: await holders(raced.id), marker: await holders(marker!.id) }).toEqual({
      raced: 0,
      marker: 0,
    });
    // The mark the deletion left is no bucket: not listed, and the name can be made again, empty.
    const listed = await c(0).send(new ListBucketsCommand({}));
    expect((listed.Buckets ?? []).map((b) => b.Name)).not.toContain('short-lived');
    expect((listed.Buckets ?? []).some((b) => b.Name?.startsWith('#'))).toBe(false);
    const grant = await fetch(
      `${cluster.url(0)}/admin/s3/buckets/${encodeURIComponent(`#deleted:${bucket}`)}/grants`,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ accessKeyId: key.accessKeyId, read: true, write: true }),
      },
    );
    expect(grant.status).toBe(404);
    await c(1).send(new CreateBucketCommand({ Bucket: 'short-lived' }));
    expect((await c(2).send(new ListObjectsV2Command({ Bucket: 'short-lived' }))).KeyCount).toBe(0);
  });
});
