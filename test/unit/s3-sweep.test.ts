import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { objectFileId } from '../../shared/ids';
import { silentLogger } from '../../shared/logging';
import { keyPartition } from '../../services/storage-node/src/placement/placement';
import { UPLOAD_RECORD_TYPE } from '../../services/storage-node/src/s3/listing';
import { PART_TYPE, type S3Multipart } from '../../services/storage-node/src/s3/multipart';
import type { S3Objects } from '../../services/storage-node/src/s3/objects';
import { S3Sweep } from '../../services/storage-node/src/s3/sweep';
import { MetadataStore } from '../../services/storage-node/src/store/metadata';

/**
 * The sweep's walk over a real SQLite store: which keys it takes for left-overs, and that keys
 * which stay suspect pass after pass never keep it from the rest. The cluster side (S3Objects,
 * S3Multipart) is recorded here; the integration tests drive it for real (s3-objects.test.ts).
 */
describe('S3Sweep', () => {
  let dir: string;
  let store: MetadataStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-sweep-'));
    store = new MetadataStore(join(dir, 'metadata.sqlite'));
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  let at = Date.parse('2026-01-01T00:00:00Z');
  function row(
    bucket: string,
    key: string,
    file: { upload?: string; type?: string; ageMs?: number } = {},
  ): void {
    at += 1_000;
    const id = objectFileId(keyPartition(bucket, key), at);
    store.putLive({
      meta: {
        id,
        name: key,
        size: 1,
        sha256: 'ab'.repeat(32),
        contentType: file.type ?? 'application/octet-stream',
        createdAt: new Date(Date.now() - (file.ageMs ?? 0)).toISOString(),
        object: { bucket, key, attrs: '{"etag":"x"}', ...(file.upload ? { upload: file.upload } : {}) },
      },
      partition: keyPartition(bucket, key),
      heldFor: null,
      checksums: Buffer.alloc(4),
    });
  }

  function sweep(maxKeys: number, deleted: string[] = []) {
    const acted: string[] = [];
    const objects = {
      sweeps: () => true,
      // Still within the grace: nothing removed, the key stays suspect.
      reclaimLeftovers: async (_b: string, key: string) => (acted.push(`versions ${key}`), 0),
      removeKey: async (_b: string, key: string, uploads: string[]) => (
        acted.push(`bucket gone ${key} ${uploads.length}`),
        0
      ),
    } as unknown as S3Objects;
    const multipart = {
      removeOrphans: async (_b: string, key: string) => (acted.push(`parts ${key}`), 0),
    } as unknown as S3Multipart;
    const s = new S3Sweep(
      objects,
      multipart,
      (after, limit) => store.allObjectRows(after, limit),
      (id) => deleted.includes(id),
      { graceMs: 1_000, partAgeMs: 60_000, pageSize: 3, maxKeys },
      silentLogger(),
    );
    return { acted, pass: () => s.pass() };
  }

  it('takes keys with more than one version, and uploads with old parts but no record nor version listing them', async () => {
    row('b1', 'one');
    row('b1', 'two');
    row('b1', 'two');
    row('b1', 'upload-alive', { upload: 'u1', type: UPLOAD_RECORD_TYPE });
    row('b1', 'upload-alive', { upload: 'u1', type: PART_TYPE, ageMs: 120_000 });
    row('b1', 'upload-left', { upload: 'u2', type: PART_TYPE, ageMs: 120_000 });
    row('b1', 'upload-young', { upload: 'u3', type: PART_TYPE, ageMs: 1_000 });
    row('b2', 'x', { upload: 'u4', type: PART_TYPE });
    const { acted, pass } = sweep(100, ['b2']);
    await pass();
    expect(acted).toEqual(['versions two', 'parts upload-left', 'bucket gone x 1']);
  });

  it('goes on from where it stopped, so keys that stay suspect never starve the rest', async () => {
    for (const key of ['k0', 'k1', 'k2', 'k3', 'k4']) {
      row('b1', key);
      row('b1', key);
    }
    const { acted, pass } = sweep(2);
    for (let i = 0; i < 4; i++) await pass();
    expect(acted).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k0', 'k1'].map((k) => `versions ${k}`));
  });
});
