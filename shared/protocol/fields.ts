import { z } from 'zod';
import { ID_PATTERN, NODE_ID_PATTERN } from '../ids';

/**
 * The field rules every internal message is built from. They are deliberately narrow: whatever
 * reaches a node from a peer has passed them, so the code behind the routes (and the client
 * behind a peer's answer) can rely on ids being safe in a path, numbers being exact, URLs being
 * plain base URLs and lists being short enough to walk.
 *
 * Only cheap checks, as they run on every internal call: regular expressions, integer bounds, at
 * most one URL parse per distinct URL. No transforms in message bodies (only in path and query
 * numbers), so parsing allocates nothing beyond the output object.
 */

/** Members a gossip message may carry; far beyond any cluster Shoal is built for. */
export const MAX_MEMBERS = 1024;
/** File names, in UTF-8 bytes (as uploads enforce). */
export const MAX_FILE_NAME_BYTES = 1024;
/** RFC 6838 allows 127 characters for each of type and subtype. */
export const MAX_CONTENT_TYPE_LENGTH = 255;
export const MAX_URL_LENGTH = 2048;
/** The number of partitions is part of the protocol: every node must agree, and bitmaps have its size. */
export const PARTITION_COUNT = 8192;

export const FileId = z.string().regex(ID_PATTERN, 'ids are 1-64 characters of letters, digits, "-" and "_"');

export const NodeId = z
  .string()
  .regex(NODE_ID_PATTERN, 'node ids are 1-64 characters of letters, digits, ".", "-" and "_"');

const SHA256_PATTERN = /^[0-9a-f]{64}$/;

export function isSha256(value: string): boolean {
  return SHA256_PATTERN.test(value);
}

export const Sha256 = z.string().regex(SHA256_PATTERN, 'a sha256 is 64 lowercase hex digits');

/** Byte sizes and counters: exact in a JS number, never negative. */
export const Count = z.int('expected a non-negative whole number').min(0, 'expected a non-negative number');

/** SWIM incarnations: only ever compared and incremented, so they must stay exact. */
export const Incarnation = Count;

const ISO_PATTERN = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$/;

/**
 * Exactly what Date.prototype.toISOString() writes: tombstone times are compared as strings (in
 * SQLite too), which only orders correctly when every node writes one format. A pattern, not a
 * Date round trip, as that costs ten times more and listings carry thousands of timestamps; only
 * days 29-31, which some months lack, are left to Date.
 */
export function isIsoTimestamp(value: string): boolean {
  if (!ISO_PATTERN.test(value)) return false;
  return Number(value.slice(8, 10)) <= 28 || new Date(Date.parse(value)).toISOString() === value;
}

export const Timestamp = z.string().refine(isIsoTimestamp, 'timestamps are UTC ISO 8601 with milliseconds');

/**
 * URLs that passed isMemberUrl. Every gossip message repeats the whole member list, and a URL
 * parse is most of what checking one costs; the answer for a string never changes.
 */
const validUrls = new Set<string>();

/**
 * What a member URL may be: the base URL a node advertises, in the form config.ts writes it
 * (origin plus path, no trailing slash). Anything else (credentials, a query, a fragment, another
 * scheme such as file: or javascript:) is refused, so that no peer can make a node call anywhere
 * but another node's base URL.
 */
export function isMemberUrl(value: string): boolean {
  if (validUrls.has(value)) return true;
  if (value.length > MAX_URL_LENGTH) return false;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') return false;
  if (value !== url.origin + url.pathname.replace(/\/+$/, '')) return false;
  if (validUrls.size >= MAX_MEMBERS * 4) validUrls.clear();
  validUrls.add(value);
  return true;
}

export const MemberUrl = z
  .string()
  .refine(isMemberUrl, 'member URLs are http(s) base URLs without credentials, query or fragment');

export function isFileName(value: string): boolean {
  // UTF-8 takes at most 3 bytes per UTF-16 unit: short names need no count.
  return (
    value.length > 0 &&
    (value.length * 3 <= MAX_FILE_NAME_BYTES || Buffer.byteLength(value) <= MAX_FILE_NAME_BYTES)
  );
}

export const FileName = z.string().refine(isFileName, `file names are 1-${MAX_FILE_NAME_BYTES} bytes`);

/** A media type as busboy reports a part's: type/subtype, both HTTP tokens, no parameters. */
const CONTENT_TYPE_PATTERN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export function isContentType(value: string): boolean {
  return value.length <= MAX_CONTENT_TYPE_LENGTH && CONTENT_TYPE_PATTERN.test(value);
}

export const ContentType = z
  .string()
  .refine(
    isContentType,
    `content types are type/subtype tokens of at most ${MAX_CONTENT_TYPE_LENGTH} characters`,
  );

/** A multipart upload's id: a newFileId (time, then random), so uploads list in the order they began. */
export const UploadId = z.string().regex(/^[0-9a-z]{26}$/, 'upload ids are 26 lowercase letters and digits');

/** An S3 object key, in UTF-8 bytes (S3's own limit). */
export const MAX_OBJECT_KEY_BYTES = 1024;
/**
 * An S3 object's stored metadata and headers (s3/objects.ts), as JSON. A read between nodes
 * carries the record in one header, which must stay well under 16 KiB with a 1 KiB key.
 */
export const MAX_OBJECT_ATTRS_LENGTH = 4096;

export function isObjectKey(value: string): boolean {
  return (
    value.length > 0 &&
    (value.length * 3 <= MAX_OBJECT_KEY_BYTES || Buffer.byteLength(value) <= MAX_OBJECT_KEY_BYTES)
  );
}

/**
 * What makes a file a version of an S3 object: the bucket and key it answers for and the S3
 * layer's own attributes (ETag, checksums, stored headers, user metadata), opaque to storage.
 * It rides with the file's row, so it is replicated, repaired and deleted with the copy.
 */
export const ObjectTagSchema = z.object({
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'not a bucket name'),
  key: z.string().refine(isObjectKey, `object keys are 1-${MAX_OBJECT_KEY_BYTES} bytes`),
  /**
   * Set on the files of a multipart upload (its record and its parts, s3/multipart.ts): they
   * belong to the key, but are not versions of it until the upload completes.
   */
  upload: UploadId.optional(),
  attrs: z
    .string()
    .max(MAX_OBJECT_ATTRS_LENGTH, `object attributes are at most ${MAX_OBJECT_ATTRS_LENGTH} characters`),
});
export type ObjectTag = z.infer<typeof ObjectTagSchema>;

/** What a replica hands out for a prepared upload: 16 random bytes in hex (see BlobStore.receive). */
export const UploadToken = z.string().regex(/^[0-9a-f]{32}$/, 'upload tokens are 32 lowercase hex digits');

/** A non-negative decimal integer in a path or a query string, read as a number. */
export function decimal(min: number, max: number, what: string) {
  return z
    .string()
    .regex(/^(0|[1-9][0-9]{0,15})$/, `${what} must be a whole number`)
    .transform(Number)
    .refine((n) => n >= min && n <= max, `${what} must be from ${min} to ${max}`);
}
