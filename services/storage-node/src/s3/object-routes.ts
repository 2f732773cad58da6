import type { ServerResponse } from 'node:http';
import { Readable, pipeline } from 'node:stream';
import { ShoalError } from '../../../../shared/errors';
import { checksumAlgorithmOf, checksumHeader, type ChecksumAlgorithm } from '../../../../shared/checksums';
import { MAX_OBJECT_KEY_BYTES, type FileRecord } from '../../../../shared/protocol';
import { sendBody } from '../http/file-response';
import type { FileReader } from '../files/download';
import type { BucketAccess } from './buckets';
import { S3Error } from './errors';
import { compareKeys } from './listing';
import { MAX_PARTS, type S3Multipart } from './multipart';
import { isManifest, type ObjectAttrs, type S3Objects, type StoredObject } from './objects';
import { ObjectHasher, RequestBody, readSmallBody } from './request-body';
import type { S3Request } from './server';
import { decodePercent, uriEncode } from './sigv4';
import { document, element, unescapeXml } from './xml';

/**
 * The object operations of the S3 front door: PutObject, CopyObject, GetObject, HeadObject,
 * DeleteObject, DeleteObjects, ListObjects and ListObjectsV2. What each answers follows S3's
 * documentation; where it is silent, Garage's behaviour.
 */

export interface ObjectDeps {
  objects: S3Objects;
  multipart: S3Multipart;
  reader: FileReader;
}

/** Headers S3 stores with an object and returns on GET and HEAD. */
const STORED_HEADERS = [
  'cache-control',
  'content-disposition',
  'content-encoding',
  'content-language',
  'expires',
];
/** S3's limit on user metadata (names and values of x-amz-meta-*). */
const MAX_USER_METADATA_BYTES = 2048;
/** A DeleteObjects body: 1000 keys of up to 1 KiB each, escaped, in XML. */
const MAX_DELETE_BODY = 8 * 1024 * 1024;
const MAX_DELETE_KEYS = 1000;
/** Keys deleted at once by one DeleteObjects. */
const DELETE_CONCURRENCY = 8;

export function checkKey(key: string): void {
  if (Buffer.byteLength(key) > MAX_OBJECT_KEY_BYTES)
    throw new S3Error('KeyTooLongError', 'Your key is too long');
}

// ---- PutObject and CopyObject ----

export async function putObject(
  deps: ObjectDeps,
  r: S3Request,
  bucket: BucketAccess,
  key: string,
): Promise<void> {
  if (!bucket.write) throw new S3Error('AccessDenied', 'Access Denied');
  const headers = r.req.headers;
  if (headers['if-match'] !== undefined || headers['if-none-match'] !== undefined)
    throw new S3Error('NotImplemented', "Shoal's S3 API does not implement conditional writes yet.");
  refuseUnsupportedWrite(r);
  const stored = storedAttrs(r);
  const put = await uploadedBody(r, 'crc64nvme', (body, finish) =>
    deps.objects.put(
      bucket.id,
      key,
      body,
      (write) => ({ ...stored, ...finish(write.sha256, write.size) }),
      r.id,
    ),
  );
  r.res.setHeader('ETag', `"${put.attrs.etag}"`);
  setChecksumHeaders(r, put.attrs);
  r.res.statusCode = 200;
  r.res.setHeader('Content-Length', '0');
  r.res.end();
}

/**
 * Runs `store` with the request's body (RequestBody): `finish` checks it against what the client
 * declared and gives its ETag and checksum. A failure of the body itself (a bad chunk signature,
 * a short body) is what the client hears, not the upload's report of it.
 */
export async function uploadedBody<T>(
  r: S3Request,
  fallback: ChecksumAlgorithm | undefined,
  store: (
    body: Readable,
    finish: (
      sha256: string,
      size: number,
    ) => { etag: string; checksum?: { algorithm: string; value: string } },
  ) => Promise<T>,
): Promise<T> {
  const body = new RequestBody(r.req, r.auth, { ...(fallback ? { fallback } : {}), lengthRequired: true });
  try {
    return await store(body.bytes, (sha256, size) => {
      const { md5, checksum } = body.verify(sha256, size);
      return { etag: md5, ...(checksum ? { checksum } : {}) };
    });
  } catch (err) {
    throw bodyFailure(body, err);
  }
}

/** The body's own failure (a bad chunk signature, a short body) over the upload's report of it. */
function bodyFailure(body: RequestBody, err: unknown): unknown {
  if (body.error instanceof S3Error) return body.error;
  if (err instanceof ShoalError && err.cause instanceof S3Error) return err.cause;
  if (body.error !== undefined && err instanceof ShoalError && err.code === 'quorum_unavailable')
    return new S3Error('IncompleteBody', 'The request body ended before all of it arrived.');
  return err;
}

export async function copyObject(
  deps: ObjectDeps,
  r: S3Request,
  bucket: BucketAccess,
  key: string,
  sourceBucket: (name: string) => BucketAccess,
): Promise<void> {
  if (!bucket.write) throw new S3Error('AccessDenied', 'Access Denied');
  const headers = r.req.headers;
  const directive = String(headers['x-amz-metadata-directive'] ?? 'COPY').toUpperCase();
  if (directive !== 'COPY' && directive !== 'REPLACE')
    throw new S3Error('InvalidArgument', 'Unknown metadata directive.');
  refuseUnsupportedWrite(r);
  const named = headers['x-amz-checksum-algorithm'];
  let algorithm: ChecksumAlgorithm = 'crc64nvme';
  const source = await copySourceRead(
    deps,
    r,
    sourceBucket,
    undefined,
    () => algorithm,
    (from, sourceKey, found) => {
      algorithm =
        (named !== undefined ? checksumAlgorithmOf(String(named)) : undefined) ??
        (checksumAlgorithmOf(found.attrs.checksum?.algorithm ?? '') || 'crc64nvme');
      if (from.id === bucket.id && sourceKey === key && directive === 'COPY')
        throw new S3Error(
          'InvalidRequest',
          "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        );
    },
  );
  const { current, bytes: hasher } = source;
  const kept: Omit<ObjectAttrs, 'etag'> =
    directive === 'COPY'
      ? {
          type: current.attrs.type,
          ...(current.attrs.headers ? { headers: current.attrs.headers } : {}),
          ...(current.attrs.meta ? { meta: current.attrs.meta } : {}),
        }
      : storedAttrs(r);
  const put = await releasing(hasher, () =>
    deps.objects.put(
      bucket.id,
      key,
      hasher,
      (write) => {
        if (write.size !== objectSize(current))
          throw new S3Error('InternalError', 'The copy read fewer bytes than the source holds.');
        const value = hasher.checksum();
        return { ...kept, etag: hasher.md5(), ...(value ? { checksum: { algorithm, value } } : {}) };
      },
      r.id,
    ),
  );
  const checksum = put.attrs.checksum;
  sendXml(
    r.res,
    200,
    document('CopyObjectResult', [
      element('LastModified', put.meta.createdAt),
      element('ETag', `"${put.attrs.etag}"`),
      ...(checksum ? [element(`Checksum${checksumXmlName(checksum.algorithm)}`, checksum.value)] : []),
    ]),
  );
}

/**
 * The object `x-amz-copy-source` names, read (a range of it, for UploadPartCopy) through an MD5
 * and the checksum `algorithm()` names: its bucket's read access and the
 * x-amz-copy-source-if-* conditions are checked first; `check` may refuse the copy once the
 * source is known.
 */
export async function copySourceRead(
  deps: ObjectDeps,
  r: S3Request,
  sourceBucket: (name: string) => BucketAccess,
  rangeHeader: string | string[] | undefined,
  algorithm: () => ChecksumAlgorithm | undefined,
  check?: (from: BucketAccess, key: string, found: StoredObject) => void,
): Promise<{ current: StoredObject; bytes: ObjectHasher }> {
  const headers = r.req.headers;
  const source = parseCopySource(String(headers['x-amz-copy-source']));
  const from = sourceBucket(source.bucket);
  if (!from.read) throw new S3Error('AccessDenied', 'Access Denied');
  checkKey(source.key);
  const current = await deps.objects.current(from.id, source.key, r.id);
  if (!current) throw new S3Error('NoSuchKey', 'The specified key does not exist.');
  check?.(from, source.key, current);
  checkConditions(current, {
    ifMatch: headers['x-amz-copy-source-if-match'],
    ifNoneMatch: headers['x-amz-copy-source-if-none-match'],
    ifModifiedSince: headers['x-amz-copy-source-if-modified-since'],
    ifUnmodifiedSince: headers['x-amz-copy-source-if-unmodified-since'],
    notModified: 'PreconditionFailed',
  });
  let range: string | undefined;
  if (rangeHeader !== undefined) {
    range = String(rangeHeader);
    const m = /^bytes=(\d+)-(\d+)$/.exec(range);
    if (!m || Number(m[1]) > Number(m[2]) || Number(m[2]) >= objectSize(current))
      throw new S3Error(
        'InvalidArgument',
        'The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy',
      );
  }
  const read = await openObject(deps, current, { method: 'GET', range, reqId: r.id });
  const body = read.body ?? Readable.from([]);
  const bytes = new ObjectHasher(algorithm());
  // pipeline, not pipe: both ends have an error listener from here on, before the upload that
  // reads `bytes` attaches its own (a source peer that dies meanwhile must not end the node), and
  // destroying `bytes` releases the source.
  pipeline(body, bytes, () => undefined);
  return { current, bytes };
}

/** Runs `use` with a copy's source; if it fails, the source is let go (its file or peer response). */
export async function releasing<T>(source: Readable, use: () => Promise<T>): Promise<T> {
  try {
    return await use();
  } catch (err) {
    source.destroy();
    throw err;
  }
}

/** The size of an object: a multipart one's is in its attributes (its file holds the part list). */
export function objectSize(object: StoredObject): number {
  return isManifest(object.record) ? (object.attrs.size ?? 0) : object.record.size;
}

/** Opens an object's bytes for a GET or HEAD, a single file or a multipart object's parts in turn. */
async function openObject(
  deps: ObjectDeps,
  object: StoredObject,
  request: { method: 'GET' | 'HEAD'; range: string | undefined; reqId: string },
): Promise<{ status: 200 | 206 | 304 | 416; start: number; end: number; body: Readable | undefined }> {
  if (isManifest(object.record)) return deps.multipart.open(object.record, object.attrs, request);
  return deps.reader.open(object.record.id, request);
}

/** `x-amz-copy-source`: `bucket/key` or `/bucket/key`, URL-encoded, maybe with `?versionId=`. */
function parseCopySource(value: string): { bucket: string; key: string } {
  let text = value;
  const q = text.indexOf('?');
  if (q >= 0) {
    const query = text.slice(q + 1);
    text = text.slice(0, q);
    const version = /(?:^|&)versionId=([^&]*)/.exec(query)?.[1];
    if (version !== undefined && version !== 'null')
      throw new S3Error('NotImplemented', "Shoal's S3 API does not implement object versions.");
  }
  const decoded = decodePercent(text.startsWith('/') ? text.slice(1) : text);
  const slash = decoded.indexOf('/');
  if (slash <= 0 || slash === decoded.length - 1)
    throw new S3Error(
      'InvalidArgument',
      'Copy Source must mention the source bucket and key: sourcebucket/sourcekey',
    );
  return { bucket: decoded.slice(0, slash), key: decoded.slice(slash + 1) };
}

/** Headers of a write that ask for what Shoal does not do, and what that is. */
const UNSUPPORTED_WRITE_HEADERS: ReadonlyArray<[string, string]> = [
  ['x-amz-tagging', 'object tagging'],
  ['x-amz-tagging-directive', 'object tagging'],
  ['x-amz-server-side-encryption', 'server-side encryption'],
  ['x-amz-server-side-encryption-customer-algorithm', 'server-side encryption'],
  ['x-amz-server-side-encryption-aws-kms-key-id', 'server-side encryption'],
  ['x-amz-copy-source-server-side-encryption-customer-algorithm', 'server-side encryption'],
  ['x-amz-object-lock-mode', 'object lock'],
  ['x-amz-object-lock-retain-until-date', 'object lock'],
  ['x-amz-object-lock-legal-hold', 'object lock'],
  ['x-amz-bucket-object-lock-enabled', 'object lock'],
  ['x-amz-website-redirect-location', 'website redirects'],
];

/** The canned ACLs that share nothing: every object is private to its bucket's keys anyway. */
const PRIVATE_ACLS = new Set(['private', 'bucket-owner-full-control']);

/**
 * Refuses a write (PutObject, CopyObject, CreateMultipartUpload, CreateBucket) that asks for what
 * Shoal does not do: tags, encryption, a lock, a redirect, an ACL that shares. S3 would keep or
 * enforce them; a success that quietly dropped them would be a wrong one. The STANDARD storage
 * class, and an ACL that shares nothing, are what Shoal does anyway.
 */
export function refuseUnsupportedWrite(r: S3Request): void {
  const headers = r.req.headers;
  for (const [name, what] of UNSUPPORTED_WRITE_HEADERS)
    if (
      headers[name] !== undefined &&
      !(name === 'x-amz-bucket-object-lock-enabled' && headers[name] === 'false')
    )
      throw new S3Error('NotImplemented', `Shoal's S3 API does not implement ${what}.`);
  const acl = headers['x-amz-acl'];
  if (
    Object.keys(headers).some((name) => name.startsWith('x-amz-grant-')) ||
    (acl !== undefined && !PRIVATE_ACLS.has(String(acl)))
  )
    throw new S3Error('NotImplemented', "Shoal's S3 API does not implement ACLs that share objects.");
  const storageClass = headers['x-amz-storage-class'];
  if (storageClass !== undefined && String(storageClass) !== 'STANDARD')
    throw new S3Error('InvalidStorageClass', 'Shoal keeps every object in the STANDARD storage class.');
}

/** Content-Type, the stored headers and the user metadata of a PUT (or a REPLACE copy). */
export function storedAttrs(r: S3Request): Omit<ObjectAttrs, 'etag'> {
  const headers = r.req.headers;
  const stored: Record<string, string> = {};
  for (const name of STORED_HEADERS) {
    const value = headers[name];
    if (typeof value === 'string') stored[name] = value;
  }
  const meta: Record<string, string> = {};
  let metaBytes = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith('x-amz-meta-') || value === undefined) continue;
    const text = Array.isArray(value) ? value.join(',') : value;
    const short = name.slice('x-amz-meta-'.length);
    meta[short] = text;
    metaBytes += Buffer.byteLength(short) + Buffer.byteLength(text);
  }
  if (metaBytes > MAX_USER_METADATA_BYTES)
    throw new S3Error(
      'MetadataTooLarge',
      `Your metadata headers exceed the maximum allowed metadata size of ${MAX_USER_METADATA_BYTES} bytes.`,
    );
  const type = typeof headers['content-type'] === 'string' ? headers['content-type'] : '';
  return {
    type,
    ...(Object.keys(stored).length > 0 ? { headers: stored } : {}),
    ...(Object.keys(meta).length > 0 ? { meta } : {}),
  };
}

// ---- GetObject and HeadObject ----

const RESPONSE_OVERRIDES: Record<string, string> = {
  'response-content-type': 'Content-Type',
  'response-content-language': 'Content-Language',
  'response-expires': 'Expires',
  'response-cache-control': 'Cache-Control',
  'response-content-disposition': 'Content-Disposition',
  'response-content-encoding': 'Content-Encoding',
};

export async function getObject(
  deps: ObjectDeps,
  r: S3Request,
  bucket: BucketAccess,
  key: string,
): Promise<void> {
  if (!bucket.read) throw new S3Error('AccessDenied', 'Access Denied');
  const head = r.req.method === 'HEAD';
  const version = r.query.get('versionId');
  if (version !== undefined && version !== 'null')
    throw new S3Error('NotImplemented', "Shoal's S3 API does not implement object versions.");
  const headers = r.req.headers;
  const part = partAsked(r);
  // A version replaced between the lookup and the read is gone: look again, for the newer one.
  for (let attempt = 0; ; attempt++) {
    const current = await deps.objects.current(bucket.id, key, r.id);
    if (!current) throw new S3Error('NoSuchKey', 'The specified key does not exist.');
    const status = checkConditions(current, {
      ifMatch: headers['if-match'],
      ifNoneMatch: headers['if-none-match'],
      ifModifiedSince: headers['if-modified-since'],
      ifUnmodifiedSince: headers['if-unmodified-since'],
      notModified: 304,
    });
    if (status === 304) {
      r.res.statusCode = 304;
      r.res.setHeader('ETag', `"${current.attrs.etag}"`);
      r.res.setHeader('Last-Modified', httpDate(current.record.createdAt));
      r.res.end();
      return;
    }
    let read;
    try {
      read = await openObject(deps, current, {
        method: head ? 'HEAD' : 'GET',
        range: part === undefined ? headers.range : await partRange(deps, current, part, r.id),
        reqId: r.id,
      });
    } catch (err) {
      if (err instanceof ShoalError && err.code === 'not_found' && attempt < 2) continue;
      throw err;
    }
    const { record } = current;
    const size = objectSize(current);
    if (read.status === 416) {
      throw new S3Error('InvalidRange', 'The requested range is not satisfiable');
    }
    const res = r.res;
    res.statusCode = read.status;
    res.setHeader('Last-Modified', httpDate(record.createdAt));
    res.setHeader('ETag', `"${current.attrs.etag}"`);
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('Content-Type', current.attrs.type || 'binary/octet-stream');
    for (const [name, value] of Object.entries(current.attrs.headers ?? {})) res.setHeader(name, value);
    for (const [name, value] of Object.entries(current.attrs.meta ?? {}))
      res.setHeader(`x-amz-meta-${name}`, value);
    for (const [param, header] of Object.entries(RESPONSE_OVERRIDES)) {
      const value = r.query.get(param);
      if (value !== undefined) res.setHeader(header, value);
    }
    // The whole object's checksum, asked for, and not on a part of it.
    if (read.status === 200 && String(headers['x-amz-checksum-mode'] ?? '').toUpperCase() === 'ENABLED')
      setChecksumHeaders(r, current.attrs);
    res.setHeader('Content-Length', String(read.end - read.start + 1));
    if (read.status === 206) res.setHeader('Content-Range', `bytes ${read.start}-${read.end}/${size}`);
    if (part !== undefined && current.attrs.parts !== undefined)
      res.setHeader('x-amz-mp-parts-count', String(current.attrs.parts));
    if (!read.body) {
      res.end();
      return;
    }
    await sendBody(res, read.body);
    return;
  }
}

/** `?partNumber=N` on a GET or HEAD: which part to read, checked as S3 checks it. */
function partAsked(r: S3Request): number | undefined {
  const text = r.query.get('partNumber');
  if (text === undefined) return undefined;
  const part = /^\d{1,5}$/.test(text) ? Number(text) : 0;
  if (part < 1 || part > MAX_PARTS)
    throw new S3Error(
      'InvalidArgument',
      `Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`,
    );
  if (r.req.headers.range !== undefined)
    throw new S3Error('InvalidRequest', 'Cannot specify both Range header and partNumber query parameter');
  return part;
}

/**
 * The byte range of one part of an object, as a Range header: a multipart object's from its part
 * list, and a single-part object is its own part 1 (Garage's rule; S3 reads it whole too).
 */
async function partRange(
  deps: ObjectDeps,
  object: StoredObject,
  part: number,
  reqId: string,
): Promise<string> {
  const sizes = isManifest(object.record)
    ? (await deps.objects.manifestOf(object.record, reqId)).parts.map((p) => p.size)
    : [object.record.size];
  if (part > sizes.length)
    throw new S3Error('InvalidPartNumber', 'The requested partnumber is not satisfiable');
  const start = sizes.slice(0, part - 1).reduce((n, size) => n + size, 0);
  return `bytes=${start}-${start + sizes[part - 1]! - 1}`;
}

interface Conditions {
  ifMatch: string | string[] | undefined;
  ifNoneMatch: string | string[] | undefined;
  ifModifiedSince: string | string[] | undefined;
  ifUnmodifiedSince: string | string[] | undefined;
  /** What a failed If-None-Match / If-Modified-Since means: 304 on a read, 412 on a copy's source. */
  notModified: 304 | 'PreconditionFailed';
}

/**
 * RFC 9110's order, as S3 applies it: If-Match (else If-Unmodified-Since) can fail with 412; then
 * If-None-Match (else If-Modified-Since) with 304. Dates compare to the second, as HTTP dates go.
 */
function checkConditions(object: StoredObject, c: Conditions): 200 | 304 {
  const etag = `"${object.attrs.etag}"`;
  const modified = Math.floor(Date.parse(object.record.createdAt) / 1000);
  const failed = (): never => {
    throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
  };
  if (c.ifMatch !== undefined) {
    if (!etagListMatches(String(c.ifMatch), etag)) failed();
  } else if (c.ifUnmodifiedSince !== undefined) {
    const since = secondsOf(c.ifUnmodifiedSince);
    if (since !== undefined && modified > since) failed();
  }
  let notModified = false;
  if (c.ifNoneMatch !== undefined) notModified = etagListMatches(String(c.ifNoneMatch), etag);
  else if (c.ifModifiedSince !== undefined) {
    const since = secondsOf(c.ifModifiedSince);
    notModified = since !== undefined && modified <= since;
  }
  if (!notModified) return 200;
  if (c.notModified === 304) return 304;
  return failed();
}

function etagListMatches(header: string, etag: string): boolean {
  return header.split(',').some((tag) => {
    const t = tag.trim().replace(/^W\//, '');
    return t === '*' || t === etag || t === etag.slice(1, -1);
  });
}

function secondsOf(header: string | string[]): number | undefined {
  const ms = Date.parse(String(header));
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}

function httpDate(iso: string): string {
  return new Date(iso).toUTCString();
}

function setChecksumHeaders(r: S3Request, attrs: ObjectAttrs): void {
  const checksum = attrs.checksum;
  const algorithm = checksum ? checksumAlgorithmOf(checksum.algorithm) : undefined;
  if (!checksum || !algorithm) return;
  r.res.setHeader(checksumHeader(algorithm), checksum.value);
  r.res.setHeader(
    'x-amz-checksum-type',
    attrs.parts === undefined ? 'FULL_OBJECT' : (attrs.checksumType ?? 'COMPOSITE'),
  );
}

function checksumXmlName(algorithm: string): string {
  return algorithm === 'crc64nvme' ? 'CRC64NVME' : algorithm.toUpperCase();
}

// ---- DeleteObject and DeleteObjects ----

export async function deleteObject(
  deps: ObjectDeps,
  r: S3Request,
  bucket: BucketAccess,
  key: string,
): Promise<void> {
  if (!bucket.write) throw new S3Error('AccessDenied', 'Access Denied');
  const version = r.query.get('versionId');
  if (version !== undefined && version !== 'null')
    throw new S3Error('NotImplemented', "Shoal's S3 API does not implement object versions.");
  await deps.objects.remove(bucket.id, key, r.id);
  r.res.statusCode = 204;
  r.res.end();
}

/**
 * GetObjectTagging and DeleteObjectTagging of the current version. Shoal keeps no tags (a write
 * that carries some is refused with 501), so every object's tag set is empty, and removing it
 * removes nothing: both are true answers. The aws CLI reads the tags of an object of multipart
 * size before it copies it to another bucket or key (`aws s3 cp s3://a/k s3://b/k`), and that
 * copy failed on a 501 here. Setting tags (PutObjectTagging) stays 501.
 */
export async function objectTagging(
  deps: ObjectDeps,
  r: S3Request,
  bucket: BucketAccess,
  key: string,
): Promise<void> {
  const method = r.req.method;
  if (method !== 'GET' && method !== 'DELETE')
    throw new S3Error('NotImplemented', "Shoal's S3 API does not implement object tagging.");
  if (method === 'GET' ? !bucket.read : !bucket.write) throw new S3Error('AccessDenied', 'Access Denied');
  const version = r.query.get('versionId');
  if (version !== undefined && version !== 'null')
    throw new S3Error('NotImplemented', "Shoal's S3 API does not implement object versions.");
  if (!(await deps.objects.current(bucket.id, key, r.id)))
    throw new S3Error('NoSuchKey', 'The specified key does not exist.');
  if (method === 'GET') {
    sendXml(r.res, 200, document('Tagging', [element('TagSet', [])]));
    return;
  }
  r.res.statusCode = 204;
  r.res.end();
}

export async function deleteObjects(deps: ObjectDeps, r: S3Request, bucket: BucketAccess): Promise<void> {
  if (!bucket.write) throw new S3Error('AccessDenied', 'Access Denied');
  const xml = (await readSmallBody(r.req, r.auth, MAX_DELETE_BODY)).toString('utf8');
  if (!/<Delete[\s>]/.test(xml))
    throw new S3Error(
      'MalformedXML',
      'The XML you provided was not well-formed or did not validate against our published schema',
    );
  const quiet = /<Quiet>\s*true\s*<\/Quiet>/i.test(xml);
  const keys: string[] = [];
  for (const m of xml.matchAll(/<Object>([\s\S]*?)<\/Object>/g)) {
    const key = /<Key>([\s\S]*?)<\/Key>/.exec(m[1]!)?.[1];
    if (key === undefined) throw new S3Error('MalformedXML', 'An Object without a Key');
    keys.push(unescapeXml(key));
  }
  if (keys.length === 0 || keys.length > MAX_DELETE_KEYS)
    throw new S3Error('MalformedXML', `A DeleteObjects request names 1 to ${MAX_DELETE_KEYS} keys`);
  const results: string[] = new Array<string>(keys.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < keys.length) {
      const i = next++;
      const key = keys[i]!;
      try {
        checkKey(key);
        await deps.objects.remove(bucket.id, key, r.id);
        results[i] = quiet ? '' : element('Deleted', [element('Key', key)]);
      } catch (err) {
        const e =
          err instanceof S3Error
            ? err
            : new S3Error('InternalError', 'We encountered an internal error. Please try again.');
        results[i] = element('Error', [
          element('Key', key),
          element('Code', e.code),
          element('Message', e.message),
        ]);
      }
    }
  };
  await Promise.all(Array.from({ length: DELETE_CONCURRENCY }, worker));
  sendXml(r.res, 200, document('DeleteResult', results));
}

// ---- ListObjects and ListObjectsV2 ----

export async function listObjects(
  deps: ObjectDeps,
  r: S3Request,
  bucket: BucketAccess,
  name: string,
): Promise<void> {
  if (!bucket.read) throw new S3Error('AccessDenied', 'Access Denied');
  const q = r.query;
  const v2 = q.get('list-type') === '2';
  if (q.has('list-type') && !v2) throw new S3Error('InvalidArgument', 'Invalid list-type: only 2 is known');
  const { encodingType, encode, maxKeys, prefix, delimiter } = listingParams(q);
  let after: string | undefined;
  const token = v2 ? q.get('continuation-token') : undefined;
  if (token !== undefined) {
    after = Buffer.from(token, 'base64url').toString('utf8');
    if (token === '' || Buffer.from(after, 'utf8').toString('base64url') !== token)
      throw new S3Error('InvalidArgument', 'The continuation token provided is incorrect');
  } else {
    after = (v2 ? q.get('start-after') : q.get('marker')) || undefined;
  }
  const page =
    maxKeys === 0
      ? { entries: [], truncated: false, next: undefined }
      : await deps.objects.list({ bucket: bucket.id, prefix, delimiter, after, limit: maxKeys }, r.id);
  const contents: string[] = [];
  const prefixes: string[] = [];
  for (const entry of page.entries) {
    if (entry.prefix) {
      prefixes.push(element('CommonPrefixes', [element('Prefix', encode(entry.key))]));
      continue;
    }
    const withOwner = !v2 || q.get('fetch-owner') === 'true';
    contents.push(
      element('Contents', listedObject(entry.key, entry.record!, encode, withOwner && bucket.owner)),
    );
  }
  const last = page.entries[page.entries.length - 1]?.key;
  const children = [
    element('Name', name),
    element('Prefix', encode(prefix)),
    ...(v2
      ? [
          ...(token !== undefined ? [element('ContinuationToken', token)] : []),
          ...(page.truncated && page.next !== undefined
            ? [element('NextContinuationToken', Buffer.from(page.next, 'utf8').toString('base64url'))]
            : []),
          element('KeyCount', page.entries.length),
          ...(q.get('start-after') !== undefined
            ? [element('StartAfter', encode(q.get('start-after')!))]
            : []),
        ]
      : [
          element('Marker', encode(q.get('marker') ?? '')),
          ...(page.truncated && delimiter !== undefined && (page.next ?? last) !== undefined
            ? [element('NextMarker', encode(maxKey(page.next, last)!))]
            : []),
        ]),
    ...listingTail({ encodingType, encode, maxKeys, delimiter }, page.truncated, [...contents, ...prefixes]),
  ];
  sendXml(r.res, 200, document('ListBucketResult', children));
}

/**
 * ListObjectVersions. No bucket here has versioning, and S3 lists such a bucket's objects as one
 * version each, `null`, the latest: that is this answer, from the same listing as ListObjects (a
 * replaced version is not one a client can read or ask for, and a deleted key has none). Scripts
 * that empty a bucket, and tools that look for old versions, ask it first.
 */
export async function listObjectVersions(
  deps: ObjectDeps,
  r: S3Request,
  bucket: BucketAccess,
  name: string,
): Promise<void> {
  if (!bucket.read) throw new S3Error('AccessDenied', 'Access Denied');
  const q = r.query;
  const { encodingType, encode, maxKeys, prefix, delimiter } = listingParams(q);
  const keyMarker = q.get('key-marker') ?? '';
  const versionMarker = q.get('version-id-marker') ?? '';
  if (versionMarker !== '' && versionMarker !== 'null')
    throw new S3Error('InvalidArgument', 'Invalid version id specified');
  if (versionMarker !== '' && keyMarker === '')
    throw new S3Error('InvalidArgument', 'A version-id marker cannot be specified without a key marker.');
  const page =
    maxKeys === 0
      ? { entries: [], truncated: false, next: undefined }
      : await deps.objects.list(
          { bucket: bucket.id, prefix, delimiter, after: keyMarker || undefined, limit: maxKeys },
          r.id,
        );
  const versions: string[] = [];
  const prefixes: string[] = [];
  for (const entry of page.entries) {
    if (entry.prefix) {
      prefixes.push(element('CommonPrefixes', [element('Prefix', encode(entry.key))]));
      continue;
    }
    const [key, ...rest] = listedObject(entry.key, entry.record!, encode, bucket.owner);
    versions.push(
      element('Version', [key!, element('VersionId', 'null'), element('IsLatest', true), ...rest]),
    );
  }
  const last = maxKey(page.next, page.entries[page.entries.length - 1]?.key);
  const children = [
    element('Name', name),
    element('Prefix', encode(prefix)),
    element('KeyMarker', encode(keyMarker)),
    element('VersionIdMarker', versionMarker),
    ...(page.truncated && last !== undefined
      ? [element('NextKeyMarker', encode(last)), element('NextVersionIdMarker', 'null')]
      : []),
    ...listingTail({ encodingType, encode, maxKeys, delimiter }, page.truncated, [...versions, ...prefixes]),
  ];
  sendXml(r.res, 200, document('ListVersionsResult', children));
}

interface ListingParams {
  encodingType: string | undefined;
  encode: (text: string) => string;
  maxKeys: number;
  delimiter: string | undefined;
}

/** encoding-type, max-keys, prefix and delimiter, as every object listing takes them. */
function listingParams(q: Map<string, string>): ListingParams & { prefix: string } {
  const encodingType = q.get('encoding-type');
  if (encodingType !== undefined && encodingType !== 'url')
    throw new S3Error('InvalidArgument', 'Invalid Encoding Method specified in Request');
  const encode = (text: string): string => (encodingType === 'url' ? uriEncode(text, false) : text);
  const maxKeysText = q.get('max-keys');
  let maxKeys = 1000;
  if (maxKeysText !== undefined) {
    if (!/^\d{1,9}$/.test(maxKeysText))
      throw new S3Error('InvalidArgument', 'Provided max-keys not an integer or within integer range');
    maxKeys = Math.min(Number(maxKeysText), 1000);
  }
  return {
    encodingType,
    encode,
    maxKeys,
    prefix: q.get('prefix') ?? '',
    delimiter: q.get('delimiter') || undefined,
  };
}

/** The end of an object listing's answer: its limits, whether there is more, the entries. */
function listingTail(p: ListingParams, truncated: boolean, entries: string[]): string[] {
  return [
    element('MaxKeys', p.maxKeys),
    ...(p.delimiter !== undefined ? [element('Delimiter', p.encode(p.delimiter))] : []),
    element('IsTruncated', truncated),
    ...entries,
    ...(p.encodingType ? [element('EncodingType', p.encodingType)] : []),
  ];
}

/** An object's elements in a listing, Key first; its owner when `owner` names one. */
function listedObject(
  key: string,
  record: FileRecord,
  encode: (text: string) => string,
  owner: string | false,
): string[] {
  const attrs = JSON.parse(record.object?.attrs ?? '{}') as ObjectAttrs;
  return [
    element('Key', encode(key)),
    element('LastModified', record.createdAt),
    element('ETag', `"${attrs.etag}"`),
    ...(attrs.checksum ? [element('ChecksumAlgorithm', checksumXmlName(attrs.checksum.algorithm))] : []),
    element('Size', objectSize({ record, attrs })),
    ...(owner === false ? [] : [element('Owner', [element('ID', owner), element('DisplayName', owner)])]),
    element('StorageClass', 'STANDARD'),
  ];
}

function maxKey(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return compareKeys(a, b) >= 0 ? a : b;
}

export function sendXml(res: ServerResponse, status: number, xml: string): void {
  const body = Buffer.from(xml, 'utf8');
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/xml');
  res.setHeader('Content-Length', String(body.length));
  res.end(body);
}
