import { GetObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { checksumsOf } from '../../shared/blocks';
import { objectFileId } from '../../shared/ids';
import type { FileMeta } from '../../shared/protocol';
import type { Peer } from '../../services/storage-node/src/peers/peer';
import { keyPartition } from '../../services/storage-node/src/placement/placement';
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

/** The id a bucket's objects are filed under, read from the SQLite of a node holding `key`. */
export function bucketIdOf(dataDir: string, key: string): string {
  const db = new Database(join(dataDir, 'metadata.sqlite'), { readonly: true });
  try {
    const row = db
      .prepare<[Buffer], { obj_bucket: string }>('SELECT obj_bucket FROM files WHERE obj_key = ? LIMIT 1')
      .get(Buffer.from(key, 'utf8'));
    if (!row) throw new Error(`no object row for ${key} in ${dataDir}`);
    return row.obj_bucket;
  } finally {
    db.close();
  }
}

/**
 * Fault injection: stores one file of an S3 key straight on each of `peers` through the internal
 * API, as replicas receive one from a coordinator. Nothing of S3 runs: no reclaim, no check of
 * the tag.
 */
export async function storeKeyFile(
  peers: Peer[],
  tag: { bucket: string; key: string; upload?: string },
  data: Buffer,
  file: { at: number; contentType: string; attrs: object },
): Promise<FileMeta> {
  const meta: FileMeta = {
    id: objectFileId(keyPartition(tag.bucket, tag.key), file.at),
    name: tag.key,
    size: data.length,
    sha256: createHash('sha256').update(data).digest('hex'),
    contentType: file.contentType,
    createdAt: new Date(file.at).toISOString(),
    object: { ...tag, attrs: JSON.stringify(file.attrs) },
  };
  const checksums = checksumsOf(data).toString('base64');
  for (const peer of peers) {
    const prepared = await peer.receive(meta.id, Readable.from([data]));
    await peer.commit(meta.id, { token: prepared.token, meta, heldFor: null, checksums });
  }
  return meta;
}
