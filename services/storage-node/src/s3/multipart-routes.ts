import {
  COMBINABLE,
  checksumAlgorithmOf,
  checksumHeader,
  type ChecksumAlgorithm,
} from '../../../../shared/checksums';
import { ShoalError } from '../../../../shared/errors';
import type { BucketAccess } from './buckets';
import { S3Error } from './errors';
import { MAX_PARTS } from './multipart';
import type { ChecksumType } from './objects';
import {
  copySourceRead,
  refuseUnsupportedWrite,
  releasing,
  type ObjectDeps,
  sendXml,
  storedAttrs,
  uploadedBody,
} from './object-routes';
import { readSmallBody } from './request-body';
import type { S3Request } from './server';
import { uriEncode } from './sigv4';
import { document, element, unescapeXml } from './xml';

/**
 * The multipart family: CreateMultipartUpload, UploadPart, UploadPartCopy, ListParts,
 * CompleteMultipartUpload, AbortMultipartUpload and ListMultipartUploads (s3/multipart.ts holds
 * how an upload is kept).
 */

export type MultipartDeps = ObjectDeps;

/** A CompleteMultipartUpload body: 10,000 parts with their ETags and checksums, in XML. */
const MAX_COMPLETE_BODY = 4 * 1024 * 1024;

export async function createUpload(
  deps: MultipartDeps,
  r: S3Request,
  bucket: BucketAccess,
  key: string,
): Promise<void> {
  if (!bucket.write) throw new S3Error('AccessDenied', 'Access Denied');
  refuseUnsupportedWrite(r);
  const named = r.req.headers['x-amz-checksum-algorithm'];
  const algorithm = named === undefined ? undefined : checksumAlgorithmOf(String(named));
  if (named !== undefined && !algorithm)
    throw new S3Error('InvalidRequest', `Checksum algorithm ${String(named)} is not supported.`);
  const typeNamed = r.req.headers['x-amz-checksum-type'];
  const checksumType = checksumTypeOf(algorithm, typeNamed === undefined ? undefined : String(typeNamed));
  const upload = await deps.multipart.create(
    bucket.id,
    key,
    { ...storedAttrs(r), ...(algorithm ? { algorithm, checksumType } : {}) },
    r.id,
  );
  if (algorithm) {
    r.res.setHeader('x-amz-checksum-algorithm', algorithm.toUpperCase());
    r.res.setHeader('x-amz-checksum-type', checksumType!);
  }
  sendXml(
    r.res,
    200,
    document('InitiateMultipartUploadResult', [
      element('Bucket', r.bucket!),
      element('Key', key),
      element('UploadId', upload),
    ]),
  );
}

function partNumberOf(r: S3Request): number {
  const text = r.query.get('partNumber') ?? '';
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > MAX_PARTS)
    throw new S3Error(
      'InvalidArgument',
      `Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`,
    );
  return Number(text);
}

function uploadIdOf(r: S3Request): string {
  const id = r.query.get('uploadId') ?? '';
  if (!/^[0-9a-z]{26}$/.test(id))
    throw new S3Error(
      'NoSuchUpload',
      'The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
    );
  return id;
}

/**
 * How an upload's checksum will cover the object, by S3's rules: FULL_OBJECT only for the CRCs
 * (they combine), COMPOSITE not for CRC-64/NVME, and CRC-64/NVME FULL_OBJECT when not said.
 */
function checksumTypeOf(
  algorithm: ChecksumAlgorithm | undefined,
  named: string | undefined,
): ChecksumType | undefined {
  if (!algorithm) {
    if (named !== undefined)
      throw new S3Error('InvalidRequest', 'x-amz-checksum-type needs an x-amz-checksum-algorithm');
    return undefined;
  }
  const type = named?.toUpperCase() ?? (algorithm === 'crc64nvme' ? 'FULL_OBJECT' : 'COMPOSITE');
  if (type !== 'COMPOSITE' && type !== 'FULL_OBJECT')
    throw new S3Error('InvalidRequest', 'x-amz-checksum-type is COMPOSITE or FULL_OBJECT');
  if (type === 'FULL_OBJECT' && !COMBINABLE.has(algorithm))
    throw new S3Error(
      'InvalidRequest',
      `The FULL_OBJECT checksum type cannot be used with the ${algorithm} checksum algorithm.`,
    );
  if (type === 'COMPOSITE' && algorithm === 'crc64nvme')
    throw new S3Error(
      'InvalidRequest',
      'The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm.',
    );
  return type;
}

export async function uploadPart(
  deps: MultipartDeps,
  r: S3Request,
  bucket: BucketAccess,
  key: string,
): Promise<void> {
  if (!bucket.write) throw new S3Error('AccessDenied', 'Access Denied');
  const part = partNumberOf(r);
  const upload = uploadIdOf(r);
  const state = await deps.multipart.state(bucket.id, key, upload, r.id);
  const algorithm = state.attrs.algorithm ? checksumAlgorithmOf(state.attrs.algorithm) : undefined;
  const attrs = await uploadedBody(r, algorithm, (body, finish) =>
    deps.multipart.uploadPart(bucket.id, key, upload, part, body, finish, r.id),
  );
  r.res.setHeader('ETag', `"${attrs.etag}"`);
  const sent = attrs.checksum ? checksumAlgorithmOf(attrs.checksum.algorithm) : undefined;
  if (attrs.checksum && sent) r.res.setHeader(checksumHeader(sent), attrs.checksum.value);
  r.res.statusCode = 200;
  r.res.setHeader('Content-Length', '0');
  r.res.end();
}

export async function uploadPartCopy(
  deps: MultipartDeps,
  r: S3Request,
  bucket: BucketAccess,
  key: string,
  sourceBucket: (name: string) => BucketAccess,
): Promise<void> {
  if (!bucket.write) throw new S3Error('AccessDenied', 'Access Denied');
  const part = partNumberOf(r);
  const upload = uploadIdOf(r);
  const state = await deps.multipart.state(bucket.id, key, upload, r.id);
  const algorithm = state.attrs.algorithm ? checksumAlgorithmOf(state.attrs.algorithm) : undefined;
  const { bytes: hasher } = await copySourceRead(
    deps,
    r,
    sourceBucket,
    r.req.headers['x-amz-copy-source-range'],
    () => algorithm,
  );
  const attrs = await releasing(hasher, () =>
    deps.multipart.uploadPart(
      bucket.id,
      key,
      upload,
      part,
      hasher,
      () => {
        const value = hasher.checksum();
        return { etag: hasher.md5(), ...(algorithm && value ? { checksum: { algorithm, value } } : {}) };
      },
      r.id,
    ),
  );
  sendXml(
    r.res,
    200,
    document('CopyPartResult', [
      element('LastModified', new Date().toISOString()),
      element('ETag', `"${attrs.etag}"`),
    ]),
  );
}

export async function listParts(
  deps: MultipartDeps,
  r: S3Request,
  bucket: BucketAccess,
  key: string,
): Promise<void> {
  if (!bucket.read) throw new S3Error('AccessDenied', 'Access Denied');
  const upload = uploadIdOf(r);
  const state = await deps.multipart.state(bucket.id, key, upload, r.id);
  const marker = Number(r.query.get('part-number-marker') ?? '0');
  const maxText = r.query.get('max-parts');
  const max = maxText === undefined ? 1000 : Math.min(Number(maxText), 1000);
  if (!Number.isInteger(marker) || marker < 0 || !Number.isInteger(max) || max < 0)
    throw new S3Error('InvalidArgument', 'part-number-marker and max-parts are whole numbers');
  const numbers = [...state.parts.keys()].filter((n) => n > marker).sort((a, b) => a - b);
  const page = numbers.slice(0, max);
  const truncated = numbers.length > page.length;
  const algorithm = state.attrs.algorithm;
  sendXml(
    r.res,
    200,
    document('ListPartsResult', [
      element('Bucket', r.bucket!),
      element('Key', key),
      element('UploadId', upload),
      element('PartNumberMarker', marker),
      ...(page.length > 0 ? [element('NextPartNumberMarker', page[page.length - 1]!)] : []),
      element('MaxParts', max),
      element('IsTruncated', truncated),
      ...(algorithm ? [element('ChecksumAlgorithm', algorithm.toUpperCase())] : []),
      ...page.map((n) => {
        const p = state.parts.get(n)!;
        return element('Part', [
          element('PartNumber', n),
          element('LastModified', p.record.createdAt),
          element('ETag', `"${p.attrs.etag}"`),
          element('Size', p.record.size),
          ...(p.attrs.checksum
            ? [element(`Checksum${p.attrs.checksum.algorithm.toUpperCase()}`, p.attrs.checksum.value)]
            : []),
        ]);
      }),
      element('Initiator', [element('ID', bucket.owner), element('DisplayName', bucket.owner)]),
      element('Owner', [element('ID', bucket.owner), element('DisplayName', bucket.owner)]),
      element('StorageClass', 'STANDARD'),
    ]),
  );
}

export async function completeUpload(
  deps: MultipartDeps,
  r: S3Request,
  bucket: BucketAccess,
  key: string,
): Promise<void> {
  if (!bucket.write) throw new S3Error('AccessDenied', 'Access Denied');
  const upload = uploadIdOf(r);
  const xml = (await readSmallBody(r.req, r.auth, MAX_COMPLETE_BODY, { checksumsOfObject: true })).toString(
    'utf8',
  );
  if (!/<CompleteMultipartUpload[\s>]/.test(xml))
    throw new S3Error(
      'MalformedXML',
      'The XML you provided was not well-formed or did not validate against our published schema',
    );
  const requested: Array<{ part: number; etag: string }> = [];
  for (const m of xml.matchAll(/<Part>([\s\S]*?)<\/Part>/g)) {
    const number = /<PartNumber>\s*(\d{1,5})\s*<\/PartNumber>/.exec(m[1]!)?.[1];
    const etag = /<ETag>([\s\S]*?)<\/ETag>/.exec(m[1]!)?.[1];
    if (number === undefined || etag === undefined)
      throw new S3Error('MalformedXML', 'Each Part needs a PartNumber and an ETag');
    requested.push({ part: Number(number), etag: unescapeXml(etag).trim() });
  }
  if (requested.length > MAX_PARTS) throw new S3Error('MalformedXML', `At most ${MAX_PARTS} parts`);
  const claimed = (algorithm: ChecksumAlgorithm): string | undefined => {
    const value = r.req.headers[checksumHeader(algorithm)];
    return value === undefined ? undefined : String(value).trim();
  };
  const sizeNamed = r.req.headers['x-amz-mp-object-size'];
  const size = sizeNamed === undefined ? undefined : Number(sizeNamed);
  if (size !== undefined && !Number.isSafeInteger(size))
    throw new S3Error('InvalidArgument', 'x-amz-mp-object-size is a whole number of bytes');
  const done = await deps.multipart.complete(bucket.id, key, upload, requested, r.id, {
    checksum: claimed,
    size,
  });
  if (done.checksum) {
    const algorithm = checksumAlgorithmOf(done.checksum.algorithm);
    if (algorithm) {
      r.res.setHeader(checksumHeader(algorithm), done.checksum.value);
      r.res.setHeader('x-amz-checksum-type', done.checksumType);
    }
  }
  sendXml(
    r.res,
    200,
    document('CompleteMultipartUploadResult', [
      element('Location', `/${r.bucket!}/${uriEncode(key, false)}`),
      element('Bucket', r.bucket!),
      element('Key', key),
      element('ETag', `"${done.etag}"`),
      ...(done.checksum
        ? [
            element(`Checksum${done.checksum.algorithm.toUpperCase()}`, done.checksum.value),
            element('ChecksumType', done.checksumType),
          ]
        : []),
    ]),
  );
}

export async function abortUpload(
  deps: MultipartDeps,
  r: S3Request,
  bucket: BucketAccess,
  key: string,
): Promise<void> {
  if (!bucket.write) throw new S3Error('AccessDenied', 'Access Denied');
  await deps.multipart.abort(bucket.id, key, uploadIdOf(r), r.id);
  r.res.statusCode = 204;
  r.res.end();
}

export async function listUploads(deps: MultipartDeps, r: S3Request, bucket: BucketAccess): Promise<void> {
  if (!bucket.read) throw new S3Error('AccessDenied', 'Access Denied');
  const q = r.query;
  if (q.get('delimiter'))
    throw new S3Error(
      'NotImplemented',
      "Shoal's S3 API does not implement a delimiter in ListMultipartUploads.",
    );
  const prefix = q.get('prefix') ?? '';
  const keyMarker = q.get('key-marker') ?? '';
  const uploadMarker = q.get('upload-id-marker') ?? '';
  const maxText = q.get('max-uploads');
  const max = maxText === undefined ? 1000 : Math.min(Number(maxText), 1000);
  if (!Number.isInteger(max) || max < 1)
    throw new S3Error('InvalidArgument', 'max-uploads is a whole number from 1');
  const encode = (text: string): string => (q.get('encoding-type') === 'url' ? uriEncode(text, false) : text);
  // After the key marker: its uploads past the upload id marker, or none of them ('~' sorts after every id).
  const start =
    keyMarker < prefix
      ? { key: prefix, upload: '' }
      : { key: keyMarker, upload: uploadMarker || (keyMarker ? '~' : '') };
  let page;
  try {
    page = await deps.multipart.list(bucket.id, prefix, start, max, r.id);
  } catch (err) {
    if (err instanceof ShoalError) throw new S3Error('ServiceUnavailable', err.message);
    throw err;
  }
  const last = page.uploads[page.uploads.length - 1];
  sendXml(
    r.res,
    200,
    document('ListMultipartUploadsResult', [
      element('Bucket', r.bucket!),
      element('KeyMarker', encode(keyMarker)),
      element('UploadIdMarker', uploadMarker),
      ...(page.truncated && last
        ? [element('NextKeyMarker', encode(last.key)), element('NextUploadIdMarker', last.upload)]
        : []),
      element('Prefix', encode(prefix)),
      element('MaxUploads', max),
      element('IsTruncated', page.truncated),
      ...page.uploads.map((u) =>
        element('Upload', [
          element('Key', encode(u.key)),
          element('UploadId', u.upload),
          element('Initiator', [element('ID', bucket.owner), element('DisplayName', bucket.owner)]),
          element('Owner', [element('ID', bucket.owner), element('DisplayName', bucket.owner)]),
          element('StorageClass', 'STANDARD'),
          element('Initiated', u.initiated),
        ]),
      ),
      ...(q.get('encoding-type') === 'url' ? [element('EncodingType', 'url')] : []),
    ]),
  );
}
