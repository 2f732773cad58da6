import { z } from 'zod';
import {
  ContentType,
  Count,
  FileId,
  FileName,
  Incarnation,
  isContentType,
  isFileName,
  isSha256,
  MAX_FILE_NAME_BYTES,
  MAX_MEMBERS,
  MemberUrl,
  NodeId,
  ObjectTagSchema,
  PARTITION_COUNT,
  UploadId,
  Sha256,
  Timestamp,
  UploadToken,
} from './fields';

/**
 * Every message nodes exchange, as zod schemas, with the TypeScript types inferred from them so a
 * type cannot say one thing and the check another.
 *
 * Objects strip keys they do not know instead of refusing them: during a rolling upgrade a newer
 * node may send a field an older one has never heard of (as `full` and `leaving` once were), and
 * that must not cut the two apart. Stripped keys never reach the code behind a route.
 */

/** Records in one listing page (GET /internal/v1/records), as the public listing's MAX_PAGE. */
export const MAX_LISTING_PAGE = 1000;
/** Tombstones in one catch-up page (GET /internal/v1/tombstones). */
export const MAX_TOMBSTONE_PAGE = 10_000;
/**
 * Rows of one partition (GET /internal/v1/partitions/<p>/records), which is not paged: 100,000 rows
 * per partition is over 800 million files in the cluster.
 */
export const MAX_PARTITION_RECORDS = 100_000;

/** What every node stores about a file besides its bytes. Immutable once written. */
export const FileMetaSchema = z.object({
  id: FileId,
  name: FileName,
  size: Count,
  sha256: Sha256,
  contentType: ContentType,
  createdAt: Timestamp,
  /** Set on the files that hold S3 objects. */
  object: ObjectTagSchema.optional(),
});
export type FileMeta = z.infer<typeof FileMetaSchema>;

/**
 * A file as a node's metadata knows it: live, or a tombstone left by a delete. A tombstone placed
 * on a node that never held the file (repair, or a delete's stand-in) has an empty name, sha256
 * and content type; a live record always has all three.
 */
export const FileRecordSchema = z
  .object({
    id: FileId,
    name: z
      .string()
      .refine(
        (v) => v === '' || isFileName(v),
        `names are 1-${MAX_FILE_NAME_BYTES} bytes, or empty on a tombstone`,
      ),
    size: Count,
    sha256: z
      .string()
      .refine((v) => v === '' || isSha256(v), 'a sha256 is 64 lowercase hex digits, or empty on a tombstone'),
    contentType: z
      .string()
      .refine((v) => v === '' || isContentType(v), 'content types are type/subtype, or empty on a tombstone'),
    createdAt: Timestamp,
    state: z.enum(['live', 'deleted']),
    deletedAt: Timestamp.nullable(),
    /** Set when this node holds the copy on behalf of a home node that was down (hinted handoff). */
    heldFor: NodeId.nullable(),
    /** On a live copy of an S3 object's file: what it is a version of. */
    object: ObjectTagSchema.optional(),
  })
  .refine(
    (r) =>
      r.state === 'live'
        ? r.deletedAt === null && r.name !== '' && r.sha256 !== '' && r.contentType !== ''
        : r.deletedAt !== null,
    'a live record has a name, sha256 and content type and no deletedAt; a tombstone has a deletedAt',
  );
export type FileRecord = z.infer<typeof FileRecordSchema>;

/** The meta of a record: what a copy of it is stored with (an S3 object's tag included). */
export function metaOf(r: FileMeta): FileMeta {
  const meta: FileMeta = {
    id: r.id,
    name: r.name,
    size: r.size,
    sha256: r.sha256,
    contentType: r.contentType,
    createdAt: r.createdAt,
  };
  if (r.object) meta.object = r.object;
  return meta;
}

export const MemberStateSchema = z.enum(
  ['alive', 'suspect', 'dead'],
  'member states are alive, suspect or dead',
);
export type MemberState = z.infer<typeof MemberStateSchema>;

/**
 * One member as gossip carries it (SWIM). Only the member itself raises its incarnation, to
 * refute a suspicion; a process starts with its start time as incarnation, so a restart beats
 * every claim about its previous life.
 */
export const MemberDigestSchema = z.object({
  id: NodeId,
  /** Where members reach it: its internal listener under --internal-port. */
  url: MemberUrl,
  /** Where clients reach it, when that is not `url` (--internal-port): what /cluster shows. */
  publicUrl: MemberUrl.optional(),
  incarnation: Incarnation,
  state: MemberStateSchema,
  /** The member's disk is (nearly) full: it takes no new copies until it has room again. */
  full: z.boolean().optional(),
  /** The member is being drained: it owns nothing any more and hands its copies over. */
  leaving: z.boolean().optional(),
});
export type MemberDigest = z.infer<typeof MemberDigestSchema>;

export const GossipMessageSchema = z.object({
  from: NodeId,
  members: z.array(MemberDigestSchema).max(MAX_MEMBERS, `gossip carries at most ${MAX_MEMBERS} members`),
});
export type GossipMessage = z.infer<typeof GossipMessageSchema>;

/** SWIM's ping-req: probe this member for me. */
export const ProbeRequestSchema = z.object({ url: MemberUrl });
export type ProbeRequest = z.infer<typeof ProbeRequestSchema>;
export const ProbeAnswerSchema = z.object({ ok: z.boolean() });

export const PingAnswerSchema = z.object({ ready: z.boolean() });

/** The answer of a replica that has received and fsync'd a temp copy, before it becomes visible. */
/**
 * A replica's answer to a streamed copy: its size. A replica does not hash the whole file: the
 * coordinator computed the sha256 once, and the commit carries the coordinator's block checksums,
 * which the replica checks against the ones it computed as the bytes came in.
 */
export const PreparedUploadSchema = z.object({
  token: UploadToken,
  size: Count,
});
export type PreparedUpload = z.infer<typeof PreparedUploadSchema>;

/** Block checksums (shared/blocks.ts) in base64: 4 bytes a MiB, so 56 kB for a 10 GiB file. */
export const BlockChecksums = z
  .string()
  .max(4 * 1024 * 1024, 'checksums are at most 4 MiB of base64')
  .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'checksums are base64');

export const CommitRequestSchema = z.object({
  token: UploadToken,
  meta: FileMetaSchema,
  heldFor: NodeId.nullable(),
  /** The coordinator's block checksums of the bytes: the replica's must be the same. */
  checksums: BlockChecksums,
});
export type CommitRequest = z.infer<typeof CommitRequestSchema>;
export const CommitAnswerSchema = z.object({ result: z.enum(['stored', 'already-stored']) });

/** With `force`, an id the node never knew gets a tombstone too (repair, or a delete's stand-in). */
export const DeleteRequestSchema = z.object({ deletedAt: Timestamp, force: z.boolean() });
export type DeleteRequest = z.infer<typeof DeleteRequestSchema>;
export const DeleteAnswerSchema = z.object({ wasLive: z.boolean(), known: z.boolean() });
export type DeleteAnswer = z.infer<typeof DeleteAnswerSchema>;

export const TombstoneSchema = z.object({ id: FileId, deletedAt: Timestamp });
export type Tombstone = z.infer<typeof TombstoneSchema>;
export const TombstoneListSchema = z.array(TombstoneSchema).max(MAX_TOMBSTONE_PAGE);

/**
 * What a node tells a peer that is catching up: a page of its tombstones since a time, whether it
 * is caught up itself (only then do its rows prove anything), and when it last knew it was up to
 * date (so a node returning from a long absence can tell a cluster that was down with it from
 * one that went on without it).
 */
export const CatchUpAnswerSchema = z.object({
  tombstones: TombstoneListSchema,
  caughtUp: z.boolean(),
  lastAliveAt: Timestamp.nullable(),
});
export type CatchUpAnswer = z.infer<typeof CatchUpAnswerSchema>;

/** Bytes of a partition bitmap, one bit per partition, and their length in base64. */
export const PARTITION_BITMAP_BYTES = PARTITION_COUNT / 8;
const BITMAP_BASE64_LENGTH = 4 * Math.ceil(PARTITION_BITMAP_BYTES / 3);

export const DigestsRequestSchema = z.object({
  partitions: z
    .string()
    .length(BITMAP_BASE64_LENGTH, `partitions is a base64 bitmap of ${PARTITION_BITMAP_BYTES} bytes`)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'partitions is a base64 bitmap'),
});
export type DigestsRequest = z.infer<typeof DigestsRequestSchema>;

const PartitionKey = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,4})$/, 'digests are keyed by partition number')
  .refine((key) => Number(key) < PARTITION_COUNT, `partitions are 0-${PARTITION_COUNT - 1}`);
/** Anti-entropy digests by partition number; partitions the node has no rows in are left out. */
export const DigestsAnswerSchema = z.object({ digests: z.record(PartitionKey, Sha256) });
export type DigestsAnswer = z.infer<typeof DigestsAnswerSchema>;

export const PartitionRecordsSchema = z.array(FileRecordSchema).max(MAX_PARTITION_RECORDS);

/** Fetch a copy of `meta` from one of `sources` (member URLs) and store it (repair, rebalance). */
export const PullRequestSchema = z.object({
  meta: FileMetaSchema,
  sources: z.array(MemberUrl).max(MAX_MEMBERS),
  heldFor: NodeId.nullable(),
});
export type PullRequest = z.infer<typeof PullRequestSchema>;
/** `bytes` is 0 when the node already had the copy. */
export const PullAnswerSchema = z.object({ result: z.literal('stored'), bytes: Count });

/** Largest file whose copy may travel in a batch (POST /internal/v1/copies): a small, inline copy. */
export const MAX_BATCHED_COPY_BYTES = 64 * 1024;
/** Copies in one batch, and their bytes in all (before base64): well within the 4 MB JSON limit. */
export const MAX_BATCH_COPIES = 256;
export const MAX_BATCH_BYTES = 2 * 1024 * 1024;
/** A batched copy's bytes, in base64. */
const BatchedCopyData = z
  .base64('data is the copy in base64')
  .max(Math.ceil(MAX_BATCHED_COPY_BYTES / 3) * 4, 'a batched copy is at most 64 KiB');

/**
 * Small copies pushed by a partition's leader (repair, rebalance), bytes and all: one request, one
 * transaction and one flush for many files instead of a pull and a fetch for each. The receiver
 * checks every copy against its meta (size and sha256) before it stores it.
 */
export const StoreCopiesRequestSchema = z.object({
  copies: z
    .array(
      z.object({
        meta: FileMetaSchema,
        heldFor: NodeId.nullable(),
        data: BatchedCopyData,
      }),
    )
    .max(MAX_BATCH_COPIES),
});
export type StoreCopiesRequest = z.infer<typeof StoreCopiesRequestSchema>;
/** One result per copy, in order: stored, already there, or refused (with why: bytes, or a tombstone). */
export const StoreCopiesAnswerSchema = z.object({
  results: z
    .array(
      z.object({
        id: FileId,
        result: z.enum(['stored', 'already-stored', 'refused']),
        reason: z.string().max(200).optional(),
      }),
    )
    .max(MAX_BATCH_COPIES),
});
export type StoreCopiesAnswer = z.infer<typeof StoreCopiesAnswerSchema>;
export type CopyResult = StoreCopiesAnswer['results'][number];

/**
 * Asks a holder for its small copies of these files (a leader that has to receive them itself):
 * it answers those it keeps inline and live, up to MAX_BATCH_BYTES in all. The asker checks each
 * against the meta it planned with before it stores it.
 */
export const ReadCopiesRequestSchema = z.object({ ids: z.array(FileId).max(MAX_BATCH_COPIES) });
export type ReadCopiesRequest = z.infer<typeof ReadCopiesRequestSchema>;
export const ReadCopiesAnswerSchema = z.object({
  copies: z
    .array(
      z.object({
        id: FileId,
        data: BatchedCopyData,
      }),
    )
    .max(MAX_BATCH_COPIES),
});
export type ReadCopiesAnswer = z.infer<typeof ReadCopiesAnswerSchema>;

/** Drop a surplus copy if its sha256 is this one, or (null) a tombstone past its grace. */
export const ForgetRequestSchema = z.object({ sha256: Sha256.nullable() });
export type ForgetRequest = z.infer<typeof ForgetRequestSchema>;
export const ForgetAnswerSchema = z.object({ forgotten: z.boolean() });

export const LocalListingSchema = z.object({
  records: z.array(FileRecordSchema).max(MAX_LISTING_PAGE),
  /** True when the node had more records past the last one returned. */
  truncated: z.boolean(),
});
export type LocalListing = z.infer<typeof LocalListingSchema>;

/** Entries of one node's answer to a bucket listing (S3 asks for at most 1000 keys a page). */
export const MAX_OBJECT_LISTING = 1000;
/** Versions of one key a node returns: more than one only until the older ones are reclaimed. */
export const MAX_OBJECT_VERSIONS = 100;
/** Files of one multipart upload a node returns: its record and S3's 10,000 parts, then some. */
export const MAX_UPLOAD_FILES = 12_000;

const BucketName = ObjectTagSchema.shape.bucket;
const ObjectKey = ObjectTagSchema.shape.key;

/** A bucket listing as one node is asked for it (s3/listing.ts scanBucket). */
export const ObjectListRequestSchema = z.object({
  bucket: BucketName,
  prefix: z.union([ObjectKey, z.literal('')]),
  delimiter: ObjectKey.optional(),
  after: ObjectKey.optional(),
  limit: z.int().min(1).max(MAX_OBJECT_LISTING),
});
export const ObjectListingSchema = z.object({
  entries: z
    .array(
      z.object({
        key: ObjectKey,
        prefix: z.boolean().optional(),
        dead: z.boolean().optional(),
        record: FileRecordSchema.optional(),
      }),
    )
    .max(MAX_OBJECT_LISTING),
  truncated: z.boolean(),
});
export type ObjectListing = z.infer<typeof ObjectListingSchema>;

export const ObjectVersionsRequestSchema = z.object({
  bucket: BucketName,
  key: ObjectKey,
  /** Asks for the files of this multipart upload instead of the key's versions. */
  upload: UploadId.optional(),
});
/** A bucket's multipart uploads as one node holds them: their records after (key, upload id). */
export const UploadListRequestSchema = z.object({
  bucket: BucketName,
  afterKey: z.union([ObjectKey, z.literal('')]),
  afterUpload: z.union([UploadId, z.literal('')]),
  limit: z.int().min(1).max(MAX_OBJECT_LISTING),
});
export const UploadListingSchema = z.object({
  records: z.array(FileRecordSchema).max(MAX_OBJECT_LISTING),
  truncated: z.boolean(),
});
export type UploadListing = z.infer<typeof UploadListingSchema>;
export const ObjectVersionsAnswerSchema = z.object({
  versions: z.array(FileRecordSchema).max(MAX_UPLOAD_FILES),
});

/** What a node reports about itself to peers and to `GET /cluster`. */
export const NodeStatusSchema = z.object({
  id: NodeId,
  url: MemberUrl,
  ready: z.boolean(),
  files: Count,
  bytes: Count,
  /** Delete markers kept until every owner has them and the grace period is over. */
  tombstones: Count,
  diskFreeBytes: Count.nullable(),
  /** Free space is below --min-free-bytes: this node takes no new copies. */
  full: z.boolean(),
  diskTotalBytes: Count.nullable(),
  /** Files with fewer than N copies, in the partitions this node leads. */
  underReplicatedFiles: Count,
  underReplicatedPartitions: Count,
  /** Bytes of missing copies this node's last repair round found and has not made yet. */
  pendingRepairBytes: Count,
  /** Bytes received as repair or rebalance copies since start. */
  repairBytesReceived: Count,
  copiesMade: Count,
  surplusDropped: Count,
  corruptFound: Count,
});
export type NodeStatus = z.infer<typeof NodeStatusSchema>;

/** Every refusal, public or internal: a stable machine-readable code and a message for people. */
export const ErrorBodySchema = z.object({
  error: z.object({
    code: z.string().regex(/^[a-z][a-z_]{0,63}$/, 'error codes are snake_case'),
    message: z.string().max(2000),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

/** A batch's answer: for each item, in order, its own answer or the error it alone failed with. */
function oneAnswerEach<A extends z.ZodType>(answer: A, max: number) {
  return z.object({ results: z.array(z.union([answer, ErrorBodySchema])).max(max) });
}

/** The most commits one batch carries. */
export const MAX_BATCH_COMMITS = 256;

/**
 * Several commits to one replica in one request: the coordinator's commits to a peer queue while
 * one batch is on its way, and go together in the next. Each is exactly a single commit; the
 * replica makes them durable together (one transaction, one flush) and answers each on its own.
 */
export const CommitBatchRequestSchema = z.object({
  commits: z
    .array(CommitRequestSchema.extend({ id: FileId }))
    .min(1)
    .max(MAX_BATCH_COMMITS),
});
export type CommitBatchRequest = z.infer<typeof CommitBatchRequestSchema>;
/** One answer per commit, in order: its result, or the error it alone failed with. */
export const CommitBatchAnswerSchema = oneAnswerEach(CommitAnswerSchema, MAX_BATCH_COMMITS);
export type CommitBatchAnswer = z.infer<typeof CommitBatchAnswerSchema>;

/** The most key lookups one batch carries. */
export const MAX_BATCH_LOOKUPS = 64;
/**
 * Several keys' versions in one request: a reader's lookups to a peer queue while one batch is on
 * its way, and go together in the next (as commits do). Keys only: an upload's files can be many
 * thousands, and are asked for one upload at a time.
 */
export const ObjectLookupBatchRequestSchema = z.object({
  lookups: z
    .array(ObjectVersionsRequestSchema.omit({ upload: true }))
    .min(1)
    .max(MAX_BATCH_LOOKUPS),
});
export type ObjectLookupBatchRequest = z.infer<typeof ObjectLookupBatchRequestSchema>;
/** One answer per lookup, in order: the key's versions, or the error it alone failed with. */
export const ObjectLookupBatchAnswerSchema = oneAnswerEach(ObjectVersionsAnswerSchema, MAX_BATCH_LOOKUPS);

/**
 * The x-shoal-meta header on a peer's copy: the record of the file served, so the reader can
 * decide ranges and validators before a byte arrives. base64url JSON, so any record fits a header.
 */
export function encodeMetaHeader(record: FileRecord): string {
  return Buffer.from(JSON.stringify(record)).toString('base64url');
}

/** The record in an x-shoal-meta header; undefined when it is missing or not a valid record. */
export function decodeMetaHeader(header: string | string[] | undefined): FileRecord | undefined {
  if (typeof header !== 'string') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  const parsed = FileRecordSchema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/** Entries of the cluster registry (S3 keys, buckets) one message may carry. */
export const MAX_REGISTRY_ENTRIES = 100_000;

/**
 * One entry of the cluster registry (services/storage-node/src/registry): a last-writer-wins
 * register. `value` null is a removal; `time` and `node` are its version.
 */
export const RegistryEntrySchema = z.object({
  kind: z.enum(['s3-key', 'bucket'], 'registry kinds are s3-key and bucket'),
  name: z.string().min(1).max(1024),
  value: z.json(),
  time: z.number().int().nonnegative(),
  node: NodeId,
});
export type RegistryEntry = z.infer<typeof RegistryEntrySchema>;

const RegistryDigest = z.string().regex(/^[0-9a-f]{64}$/, 'a registry digest is a sha256 in hex');
/** The caller's digest; the answer carries every entry when the digests differ. */
export const RegistrySyncRequestSchema = z.object({ digest: RegistryDigest });
export const RegistrySyncAnswerSchema = z.object({
  digest: RegistryDigest,
  entries: z.array(RegistryEntrySchema).max(MAX_REGISTRY_ENTRIES).optional(),
});
export const RegistryMergeRequestSchema = z.object({
  entries: z.array(RegistryEntrySchema).min(1).max(MAX_REGISTRY_ENTRIES),
});
export const RegistryMergeAnswerSchema = z.object({ merged: Count });
