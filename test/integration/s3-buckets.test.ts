import {
  CreateBucketCommand,
  DeleteBucketCommand,
  GetBucketCorsCommand,
  GetBucketEncryptionCommand,
  GetBucketLocationCommand,
  GetBucketVersioningCommand,
  GetObjectTaggingCommand,
  HeadBucketCommand,
  ListBucketsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { TestCluster } from '../helpers/cluster';
import { s3Failure as failure } from '../helpers/s3';
import { runShoal } from '../helpers/shoal-cli';

/**
 * The S3 listener's bucket operations, driven by the AWS SDK for JavaScript v3 at its default
 * settings, against three real nodes: any node serves any bucket, a bucket belongs to the key that
 * made it, and every refusal is S3's own error.
 */

const ADMIN = 'admin-key-for-s3-bucket-tests';

/** The shoal bin with the admin API key. */
const shoal = (args: string[]) => runShoal(args, ADMIN);

interface Key {
  accessKeyId: string;
  secretAccessKey: string;
}

describe('S3 buckets through the AWS SDK', () => {
  let cluster: TestCluster;
  let alice: Key;
  let bob: Key;

  const client = (i: number, key: Key, region = 'us-east-1') =>
    new S3Client({ endpoint: cluster.node(i).s3Url, region, forcePathStyle: true, credentials: key });

  async function makeKey(name: string): Promise<Key> {
    const res = await fetch(`${cluster.url(0)}/admin/s3/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as Key;
  }

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, s3: true, apiKeys: [`admin:${ADMIN}`] });
    alice = await makeKey('alice');
    bob = await makeKey('bob');
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('creates a bucket at one node that every node then serves, and deletes it from another', async () => {
    await client(0, alice).send(new CreateBucketCommand({ Bucket: 'holiday-photos' }));
    for (let i = 0; i < 3; i++) {
      const listed = await client(i, alice).send(new ListBucketsCommand({}));
      expect(listed.Buckets?.map((b) => b.Name)).toContain('holiday-photos');
      expect(
        (await client(i, alice).send(new HeadBucketCommand({ Bucket: 'holiday-photos' }))).$metadata
          .httpStatusCode,
      ).toBe(200);
    }
    const location = await client(1, alice).send(new GetBucketLocationCommand({ Bucket: 'holiday-photos' }));
    expect(location.LocationConstraint ?? '').toBe('');
    // Creating it again as its owner succeeds, as S3 does in us-east-1.
    await client(2, alice).send(new CreateBucketCommand({ Bucket: 'holiday-photos' }));
    await client(2, alice).send(new DeleteBucketCommand({ Bucket: 'holiday-photos' }));
    for (let i = 0; i < 3; i++) {
      expect(await failure(client(i, alice).send(new HeadBucketCommand({ Bucket: 'holiday-photos' })))).toBe(
        '404 NotFound',
      );
      expect(
        (await client(i, alice).send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name) ?? [],
      ).not.toContain('holiday-photos');
    }
  });

  it("keeps one key's buckets from another until it is granted access", async () => {
    await client(0, alice).send(new CreateBucketCommand({ Bucket: 'alice-private' }));
    expect(await failure(client(1, bob).send(new CreateBucketCommand({ Bucket: 'alice-private' })))).toBe(
      '409 BucketAlreadyExists',
    );
    // A HEAD answer has no body: the SDK sees the status alone.
    expect(await failure(client(1, bob).send(new HeadBucketCommand({ Bucket: 'alice-private' })))).toMatch(
      /^403 /,
    );
    expect(
      (await client(1, bob).send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name) ?? [],
    ).not.toContain('alice-private');
    const grant = await shoal([
      'bucket',
      'allow',
      'alice-private',
      '--key',
      bob.accessKeyId,
      '--read',
      '--to',
      cluster.url(2),
    ]);
    expect(grant).toMatchObject({ code: 0, out: `${bob.accessKeyId} may read alice-private\n` });
    const nowhere = await shoal([
      'bucket',
      'allow',
      'no-such-bucket',
      '--key',
      bob.accessKeyId,
      '--write',
      '--to',
      cluster.url(0),
    ]);
    expect(nowhere.code).toBe(3);
    expect(
      (await client(1, bob).send(new HeadBucketCommand({ Bucket: 'alice-private' }))).$metadata
        .httpStatusCode,
    ).toBe(200);
    expect((await client(0, bob).send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name)).toContain(
      'alice-private',
    );
    // Only the owner deletes a bucket.
    expect(await failure(client(1, bob).send(new DeleteBucketCommand({ Bucket: 'alice-private' })))).toBe(
      '403 AccessDenied',
    );
  });

  it("answers S3's errors: bad names, wrong secrets, unknown keys, another region, unsigned requests", async () => {
    expect(await failure(client(0, alice).send(new CreateBucketCommand({ Bucket: 'Not_A_Bucket' })))).toBe(
      '400 InvalidBucketName',
    );
    expect(await failure(client(0, alice).send(new DeleteBucketCommand({ Bucket: 'never-made' })))).toBe(
      '404 NoSuchBucket',
    );
    const wrongSecret = { ...alice, secretAccessKey: `${alice.secretAccessKey}x` };
    expect(await failure(client(1, wrongSecret).send(new ListBucketsCommand({})))).toBe(
      '403 SignatureDoesNotMatch',
    );
    const unknown = { accessKeyId: 'SKNOSUCHKEY000000000', secretAccessKey: alice.secretAccessKey };
    expect(await failure(client(1, unknown).send(new ListBucketsCommand({})))).toBe('403 InvalidAccessKeyId');
    expect(await failure(client(2, alice, 'eu-west-1').send(new ListBucketsCommand({})))).toBe(
      '400 AuthorizationHeaderMalformed',
    );
    const anonymous = await fetch(`${cluster.node(0).s3Url}/`);
    expect(anonymous.status).toBe(403);
    const body = await anonymous.text();
    expect(body).toContain('<Code>AccessDenied</Code>');
    expect(anonymous.headers.get('content-type')).toBe('application/xml');
  });

  it('refuses a revoked key at every node', async () => {
    const carol = await makeKey('carol');
    await client(0, carol).send(new ListBucketsCommand({}));
    const revoked = await fetch(`${cluster.url(1)}/admin/s3/keys/${carol.accessKeyId}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(revoked.status).toBe(204);
    for (let i = 0; i < 3; i++)
      expect(await failure(client(i, carol).send(new ListBucketsCommand({})))).toBe('403 InvalidAccessKeyId');
  });

  it('answers 501 NotImplemented, never a wrong success, for what it does not do', async () => {
    await client(0, alice).send(new CreateBucketCommand({ Bucket: 'not-everything' }));
    expect(
      await failure(
        client(1, alice).send(
          new PutBucketVersioningCommand({
            Bucket: 'not-everything',
            VersioningConfiguration: { Status: 'Enabled' },
          }),
        ),
      ),
    ).toBe('501 NotImplemented');
    await client(1, alice).send(
      new PutObjectCommand({ Bucket: 'not-everything', Key: 'a.txt', Body: 'hello' }),
    );
    expect(
      await failure(
        client(2, alice).send(
          new PutObjectTaggingCommand({
            Bucket: 'not-everything',
            Key: 'a.txt',
            Tagging: { TagSet: [{ Key: 'k', Value: 'v' }] },
          }),
        ),
      ),
    ).toBe('501 NotImplemented');
    expect(
      await failure(
        client(1, alice).send(new PutObjectCommand({ Bucket: 'no-such-bucket', Key: 'a.txt', Body: 'x' })),
      ),
    ).toBe('404 NoSuchBucket');
  });

  it('reads back what it does not keep as S3 reads back what was never set', async () => {
    await client(0, alice).send(new CreateBucketCommand({ Bucket: 'never-set' }));
    await client(1, alice).send(new PutObjectCommand({ Bucket: 'never-set', Key: 'a.txt', Body: 'hello' }));
    // Versioning never enabled: no Status. No CORS rules, no encryption: S3's 404s.
    const versioning = await client(2, alice).send(new GetBucketVersioningCommand({ Bucket: 'never-set' }));
    expect(versioning.Status).toBeUndefined();
    expect(await failure(client(0, alice).send(new GetBucketCorsCommand({ Bucket: 'never-set' })))).toBe(
      '404 NoSuchCORSConfiguration',
    );
    expect(
      await failure(client(1, alice).send(new GetBucketEncryptionCommand({ Bucket: 'never-set' }))),
    ).toBe('404 ServerSideEncryptionConfigurationNotFoundError');
    // An object's tags: none, for an object that exists; NoSuchKey for one that does not.
    const tags = await client(2, alice).send(
      new GetObjectTaggingCommand({ Bucket: 'never-set', Key: 'a.txt' }),
    );
    expect(tags.TagSet ?? []).toEqual([]);
    expect(
      await failure(client(0, alice).send(new GetObjectTaggingCommand({ Bucket: 'never-set', Key: 'nope' }))),
    ).toBe('404 NoSuchKey');
    // Another key's bucket stays another key's.
    expect(await failure(client(0, bob).send(new GetBucketVersioningCommand({ Bucket: 'never-set' })))).toBe(
      '403 AccessDenied',
    );
  });
});
