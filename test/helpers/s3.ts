import { GetObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { TestCluster } from './cluster';

/** An S3 access key as `POST /admin/s3/keys` (and `shoal key create --json`) gives it. */
export interface S3Key {
  accessKeyId: string;
  secretAccessKey: string;
}

/** Makes an S3 key through a node's admin API, with the admin API key the cluster was started with. */
export async function makeS3Key(cluster: TestCluster, adminKey: string, name: string): Promise<S3Key> {
  const res = await fetch(`${cluster.url(0)}/admin/s3/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  if (res.status !== 201) throw new Error(`key create answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as S3Key;
}

/** The AWS SDK's S3 client for node i, path style, at the SDK's default settings otherwise. */
export function s3Client(cluster: TestCluster, i: number, key: S3Key, region = 'us-east-1'): S3Client {
  return new S3Client({ endpoint: cluster.node(i).s3Url, region, forcePathStyle: true, credentials: key });
}

/** The S3 error code a call fails with (and its HTTP status), or 'ok'. */
export async function s3Failure(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return 'ok';
  } catch (err) {
    if (err instanceof S3ServiceException) return `${err.$metadata.httpStatusCode} ${err.name}`;
    throw err;
  }
}

/** An object's whole body, read through `client`. */
export async function s3Bytes(client: S3Client, Bucket: string, Key: string): Promise<Buffer> {
  const res = await client.send(new GetObjectCommand({ Bucket, Key }));
  return Buffer.from(await res.Body!.transformToByteArray());
}
