import { randomBytes } from 'node:crypto';
import { ShoalError } from '../../../../shared/errors';
import type { Registry } from '../registry/registry';
import type { RegistrySync } from '../registry/registry-sync';

/**
 * S3 access keys: an id and a secret that signs requests (SigV4), kept in the cluster registry so
 * that every node can check a signature with no call to anyone. The secret is stored as it is,
 * on every node, because SigV4 needs it to compute the signature (S3, Garage and MinIO do the
 * same); it leaves a node only to its peers, over the signed internal protocol, and to the client
 * that creates the key, once.
 */

const KIND = 's3-key';
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** Names are labels for people: printable, short. */
const NAME_PATTERN = /^[\p{L}\p{N}\p{P}\p{S} ]{1,128}$/u;

interface StoredKey {
  name: string;
  secret: string;
  createdAt: string;
}

export interface S3KeyInfo {
  accessKeyId: string;
  name: string;
  createdAt: string;
}

export class S3Keys {
  constructor(
    private readonly registry: Registry,
    private readonly sync: RegistrySync,
  ) {}

  /** Makes a key, on disk here and pushed to the live members before it returns. */
  async create(name: string): Promise<S3KeyInfo & { secretAccessKey: string }> {
    if (!NAME_PATTERN.test(name) || name.trim() !== name)
      throw new ShoalError(
        'bad_request',
        'a key name is 1 to 128 printable characters, without spaces at its ends',
      );
    const accessKeyId = newAccessKeyId();
    const stored: StoredKey = {
      name,
      secret: randomBytes(30).toString('base64url'),
      createdAt: new Date().toISOString(),
    };
    await this.sync.spread(this.registry.put(KIND, accessKeyId, { ...stored }));
    return { accessKeyId, name, createdAt: stored.createdAt, secretAccessKey: stored.secret };
  }

  list(): S3KeyInfo[] {
    return this.registry.list(KIND).map(({ name: accessKeyId, value }) => {
      const key = value as unknown as StoredKey;
      return { accessKeyId, name: key.name, createdAt: key.createdAt };
    });
  }

  /** Revokes a key everywhere; false when there is no such key. */
  async remove(accessKeyId: string): Promise<boolean> {
    if (this.registry.get(KIND, accessKeyId) === undefined) return false;
    await this.sync.spread(this.registry.put(KIND, accessKeyId, null));
    return true;
  }

  /** The secret that signs for a key; undefined for a key that does not exist (or no longer). */
  secretOf(accessKeyId: string): string | undefined {
    return (this.registry.get(KIND, accessKeyId) as unknown as StoredKey | undefined)?.secret;
  }
}

/** 20 characters like AWS's own ids: `SK` and 18 base32 characters (90 random bits). */
function newAccessKeyId(): string {
  const bytes = randomBytes(18);
  let id = 'SK';
  for (const b of bytes) id += BASE32[b & 31];
  return id;
}
