import { randomBytes } from 'node:crypto';
import { asJson, type Registry } from '../registry/registry';
import type { RegistrySync } from '../registry/registry-sync';
import { S3Error } from './errors';

/**
 * Buckets, kept in the cluster registry like the keys that own them: every node knows every
 * bucket, its owner and its grants, with no call to anyone. A bucket belongs to the key that made
 * it; `shoal bucket allow` grants others read or write.
 *
 * Two keys that create the same name at the same moment on two nodes both hear success, and the
 * registry's last-writer-wins keeps one owner (the later write, then the greater node id): a race
 * S3 itself settles inside one region's metadata store. Shoal has no such store by design, and
 * a bucket created an instant earlier is a conflict clients must be ready for anyway.
 */

const KIND = 'bucket';
/** The registry name that marks a bucket id as deleted; '#' is in no bucket name. */
const DELETED_ID = '#deleted:';

/** A bucket as one key may use it (S3Buckets.access). */
export interface BucketAccess extends Grant {
  id: string;
  /** The key that owns the bucket. */
  owner: string;
  /** Whether the asking key is that owner. */
  isOwner: boolean;
}

export interface Grant {
  read: boolean;
  write: boolean;
}

interface BucketRecord {
  /**
   * What the bucket's objects are filed under: a name deleted and made again is a new bucket, and
   * sees nothing of the old one's objects. Buckets made before ids were kept use their name.
   */
  id?: string;
  owner: string;
  createdAt: string;
  grants: Record<string, Grant>;
}

export interface BucketInfo {
  name: string;
  createdAt: string;
}

export class S3Buckets {
  constructor(
    private readonly registry: Registry,
    private readonly sync: RegistrySync,
  ) {}

  /**
   * What `accessKeyId` may do in `bucket`, with the bucket's id and owner; throws NoSuchBucket, or
   * AccessDenied for a key that may do nothing there.
   */
  access(bucket: string, accessKeyId: string): BucketAccess {
    const record = this.record(bucket);
    if (!record) throw new S3Error('NoSuchBucket', 'The specified bucket does not exist');
    const id = record.id ?? bucket;
    if (record.owner === accessKeyId)
      return { id, owner: record.owner, read: true, write: true, isOwner: true };
    const grant = record.grants[accessKeyId];
    if (!grant || (!grant.read && !grant.write)) throw new S3Error('AccessDenied', 'Access Denied');
    return { id, owner: record.owner, ...grant, isOwner: false };
  }

  /** The buckets a key owns or was granted anything in, by name. */
  visibleTo(accessKeyId: string): BucketInfo[] {
    return this.registry.list(KIND).flatMap(({ name }) => {
      const record = this.record(name);
      if (!record) return [];
      const grant = record.grants[accessKeyId];
      return record.owner === accessKeyId || grant?.read || grant?.write
        ? [{ name, createdAt: record.createdAt }]
        : [];
    });
  }

  /** Creates a bucket owned by the key; 'owned' when that key already owns it. */
  async create(bucket: string, owner: string): Promise<'created' | 'owned'> {
    const problem = bucketNameProblem(bucket);
    if (problem) throw new S3Error('InvalidBucketName', `The specified bucket is not valid: ${problem}`);
    const existing = this.record(bucket);
    if (existing) {
      if (existing.owner === owner) return 'owned';
      throw new S3Error(
        'BucketAlreadyExists',
        'The requested bucket name is not available. Select a different name and try again.',
      );
    }
    const record: BucketRecord = {
      id: newBucketId(),
      owner,
      createdAt: new Date().toISOString(),
      grants: {},
    };
    await this.sync.spread(this.registry.put(KIND, bucket, asJson(record)));
    return 'created';
  }

  /**
   * Deletes a bucket. Its id stays known as deleted, under a name no bucket can have, so that an
   * object written in a race with the deletion can be told from one of a bucket this node has not
   * heard of yet, and swept (s3/sweep.ts). The mark is shaped as a bucket nobody owns: a node of
   * the version before takes it for a bucket it shows to no key.
   */
  async remove(bucket: string): Promise<void> {
    const record = this.record(bucket);
    await this.sync.spread(this.registry.put(KIND, bucket, null));
    if (!record) return;
    const mark: BucketRecord = { owner: '', createdAt: new Date().toISOString(), grants: {} };
    await this.sync.spread(this.registry.put(KIND, `${DELETED_ID}${record.id ?? bucket}`, asJson(mark)));
  }

  /** Whether objects filed under this bucket id belong to a deleted bucket. */
  isDeleted(id: string): boolean {
    return this.registry.get(KIND, `${DELETED_ID}${id}`) !== undefined;
  }

  /**
   * Grants another key read or write access to a bucket, on top of what it had; returns what it
   * has now. Undefined when there is no such bucket.
   */
  async allow(bucket: string, accessKeyId: string, grant: Grant): Promise<Grant | undefined> {
    const record = this.record(bucket);
    if (!record) return undefined;
    const had = record.grants[accessKeyId] ?? { read: false, write: false };
    const now = { read: had.read || grant.read, write: had.write || grant.write };
    const grants = { ...record.grants, [accessKeyId]: now };
    await this.sync.spread(this.registry.put(KIND, bucket, asJson({ ...record, grants })));
    return now;
  }

  private record(bucket: string): BucketRecord | undefined {
    // A deleted bucket's mark is no bucket, whatever name a request gives.
    if (bucket.startsWith(DELETED_ID)) return undefined;
    return this.registry.get(KIND, bucket) as unknown as BucketRecord | undefined;
  }
}

/** A bucket id: 24 hex digits after a letter, so that it passes as a bucket name on the wire. */
function newBucketId(): string {
  return `b${randomBytes(12).toString('hex')}`;
}

/** S3's rules for bucket names (general purpose buckets); undefined when the name follows them. */
export function bucketNameProblem(name: string): string | undefined {
  if (name.length < 3 || name.length > 63) return 'a bucket name is 3 to 63 characters long';
  if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(name))
    return 'lower-case letters, digits, "." and "-", beginning and ending with a letter or digit';
  if (name.includes('..')) return 'no two adjacent periods';
  if (/^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name)) return 'not formatted as an IP address';
  if (
    name.startsWith('xn--') ||
    name.startsWith('sthree-') ||
    name.endsWith('-s3alias') ||
    name.endsWith('--ol-s3')
  )
    return 'a prefix or suffix S3 reserves';
  return undefined;
}
