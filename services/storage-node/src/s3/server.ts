import { randomHex32 } from '../../../../shared/hashing';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Logger } from '../../../../shared/logging';
import { ShoalError, errorText, type ErrorCode } from '../../../../shared/errors';
import type { FileReader } from '../files/download';
import type { S3Buckets } from './buckets';
import { S3Error, type S3ErrorCode } from './errors';
import type { S3Keys } from './keys';
import {
  checkKey,
  copyObject,
  deleteObject,
  deleteObjects,
  getObject,
  listObjects,
  listObjectVersions,
  objectTagging,
  putObject,
  refuseUnsupportedWrite,
  sendXml,
} from './object-routes';
import type { S3Multipart } from './multipart';
import {
  abortUpload,
  completeUpload,
  createUpload,
  listParts,
  listUploads,
  uploadPart,
  uploadPartCopy,
} from './multipart-routes';
import type { S3Objects } from './objects';
import { readSmallBody } from './request-body';
import { decodePercent, parseQuery, verifySignature, type VerifiedRequest } from './sigv4';
import { document, element, escapeXml, textOf } from './xml';

/**
 * The S3 front door: a listener of its own (--s3-port) on every node, plain node:http with no
 * framework, since S3 routes by bucket, key and query sub-resource rather than by path patterns.
 * Every request must carry a SigV4 signature from a key in the cluster registry; the bucket
 * comes from the path (`/<bucket>/<key>`, always) or from the Host (`<bucket>.<--s3-domain>`).
 *
 * Served: the bucket operations (ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
 * GetBucketLocation) and the object operations of object-routes.ts. Everything else answers 501
 * NotImplemented, never a wrong success.
 */

export interface S3Deps {
  region: string;
  domain: string | undefined;
  keys: S3Keys;
  buckets: S3Buckets;
  objects: S3Objects;
  multipart: S3Multipart;
  reader: FileReader;
  log: Logger;
  /** Whether the node serves requests (ready, not stopping), and if not, why. */
  ready: () => boolean;
  stopping: () => boolean;
}

/** The largest body a bucket operation takes (CreateBucket's configuration is a few hundred bytes). */
const MAX_SMALL_BODY = 64 * 1024;

export interface S3Request {
  req: IncomingMessage;
  res: ServerResponse;
  id: string;
  bucket: string | undefined;
  key: string | undefined;
  query: Map<string, string>;
  auth: VerifiedRequest;
}

export function s3RequestListener(deps: S3Deps): RequestListener {
  return (req, res) => {
    const id = randomHex32().slice(0, 16).toUpperCase();
    res.setHeader('x-amz-request-id', id);
    res.setHeader('Server', 'Shoal');
    if (deps.stopping()) res.setHeader('Connection', 'close');
    handle(deps, req, res, id).catch((err: unknown) => answerError(deps, req, res, id, err));
  };
}

async function handle(deps: S3Deps, req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
  if (!deps.ready()) throw new S3Error('ServiceUnavailable', 'This node is not ready; try another node.');
  const target = req.url ?? '/';
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  const rawQuery = q < 0 ? '' : target.slice(q + 1);
  if (!rawPath.startsWith('/')) throw new S3Error('InvalidRequest', 'The request target must be a path');
  const { bucket, key } = addressOf(deps.domain, req.headers.host, rawPath);
  const auth = verifySignature(
    { method: req.method ?? 'GET', rawPath, rawQuery, headers: req.headersDistinct },
    { region: deps.region, secretOf: (accessKeyId) => deps.keys.secretOf(accessKeyId) },
  );
  const query = new Map(parseQuery(rawQuery));
  const r: S3Request = { req, res, id, bucket, key, query, auth };
  if (bucket === undefined) return serviceOperation(deps, r);
  if (key === undefined) return bucketOperation(deps, r, bucket);
  return objectOperation(deps, r, bucket, key);
}

/** Sub-resources of an object that S3 has and Shoal does not. */
const OBJECT_SUBRESOURCES = ['acl', 'retention', 'legal-hold', 'torrent', 'restore', 'select', 'attributes'];

async function objectOperation(deps: S3Deps, r: S3Request, name: string, key: string): Promise<void> {
  // The bucket is checked first, as S3 does: NoSuchBucket and AccessDenied mean what they say.
  const bucket = deps.buckets.access(name, r.auth.accessKeyId);
  checkKey(key);
  const unsupported = OBJECT_SUBRESOURCES.find((s) => r.query.has(s));
  if (unsupported) throw notImplemented(`the ?${unsupported} sub-resource`);
  if (r.query.has('tagging')) return objectTagging(deps, r, bucket, key);
  const method = r.req.method;
  const sourceBucket = (source: string) => deps.buckets.access(source, r.auth.accessKeyId);
  const copy = r.req.headers['x-amz-copy-source'] !== undefined;
  if (r.query.has('uploads')) {
    if (method === 'POST') return createUpload(deps, r, bucket, key);
    throw notImplemented(`${method} of ?uploads on an object`);
  }
  if (r.query.has('uploadId')) {
    if (method === 'PUT' && copy) return uploadPartCopy(deps, r, bucket, key, sourceBucket);
    if (method === 'PUT') return uploadPart(deps, r, bucket, key);
    if (method === 'GET') return listParts(deps, r, bucket, key);
    if (method === 'POST') return completeUpload(deps, r, bucket, key);
    if (method === 'DELETE') return abortUpload(deps, r, bucket, key);
    throw notImplemented(`${method} of an upload`);
  }
  if (method === 'GET' || method === 'HEAD') return getObject(deps, r, bucket, key);
  if (method === 'PUT') {
    if (copy) return copyObject(deps, r, bucket, key, sourceBucket);
    return putObject(deps, r, bucket, key);
  }
  if (method === 'DELETE') return deleteObject(deps, r, bucket, key);
  throw notImplemented(`${method} on an object`);
}

/** The bucket and key a request addresses: virtual-host style when the Host names one, else path style. */
function addressOf(
  domain: string | undefined,
  hostHeader: string | undefined,
  rawPath: string,
): { bucket: string | undefined; key: string | undefined } {
  const host = (hostHeader ?? '').toLowerCase().replace(/:\d+$/, '');
  if (domain !== undefined && host.endsWith(`.${domain}`)) {
    const bucket = host.slice(0, -domain.length - 1);
    const key = rawPath === '/' ? undefined : decodePercent(rawPath.slice(1));
    return { bucket, key };
  }
  const slash = rawPath.indexOf('/', 1);
  if (rawPath === '/') return { bucket: undefined, key: undefined };
  if (slash < 0) return { bucket: decodePercent(rawPath.slice(1)), key: undefined };
  const bucket = decodePercent(rawPath.slice(1, slash));
  const key = rawPath.length > slash + 1 ? decodePercent(rawPath.slice(slash + 1)) : undefined;
  return { bucket, key };
}

function serviceOperation(deps: S3Deps, r: S3Request): void {
  if (r.req.method !== 'GET') throw notImplemented(`${r.req.method} on the service`);
  const owner = r.auth.accessKeyId;
  const buckets = deps.buckets.visibleTo(owner);
  sendXml(
    r.res,
    200,
    document('ListAllMyBucketsResult', [
      element('Owner', [element('ID', owner), element('DisplayName', owner)]),
      element(
        'Buckets',
        buckets.map((b) =>
          element('Bucket', [element('Name', b.name), element('CreationDate', b.createdAt)]),
        ),
      ),
    ]),
  );
}

async function bucketOperation(deps: S3Deps, r: S3Request, bucket: string): Promise<void> {
  const method = r.req.method;
  const subresources = [...r.query.keys()].filter((k) => !k.startsWith('X-Amz-') && !k.startsWith('x-amz-'));
  if (method === 'PUT' && subresources.length === 0) return createBucket(deps, r, bucket);
  if (method === 'HEAD' && subresources.length === 0) {
    deps.buckets.access(bucket, r.auth.accessKeyId);
    r.res.setHeader('x-amz-bucket-region', deps.region);
    r.res.statusCode = 200;
    r.res.end();
    return;
  }
  if (method === 'GET' && subresources.length === 1 && subresources[0] === 'location') {
    deps.buckets.access(bucket, r.auth.accessKeyId);
    // S3 answers an empty constraint for us-east-1, its historical default.
    const region = deps.region === 'us-east-1' ? '' : deps.region;
    sendXml(r.res, 200, document('LocationConstraint', [escapeXml(region)]));
    return;
  }
  if (method === 'GET' && subresources.length === 1) {
    const unset = UNSET_BUCKET_CONFIGURATIONS[subresources[0]!];
    if (unset) {
      deps.buckets.access(bucket, r.auth.accessKeyId);
      if (unset.status === 200) sendXml(r.res, 200, document(unset.root, unset.children ?? []));
      else throw new S3Error(unset.code, unset.message);
      return;
    }
  }
  const listing = [
    'list-type',
    'prefix',
    'delimiter',
    'max-keys',
    'continuation-token',
    'start-after',
    'marker',
    'encoding-type',
    'fetch-owner',
  ];
  if (method === 'GET' && subresources.every((s) => listing.includes(s)))
    return listObjects(deps, r, deps.buckets.access(bucket, r.auth.accessKeyId), bucket);
  const versionListing = [
    'versions',
    'prefix',
    'delimiter',
    'key-marker',
    'version-id-marker',
    'max-keys',
    'encoding-type',
  ];
  if (
    method === 'GET' &&
    subresources.includes('versions') &&
    subresources.every((s) => versionListing.includes(s))
  )
    return listObjectVersions(deps, r, deps.buckets.access(bucket, r.auth.accessKeyId), bucket);
  const uploadListing = [
    'uploads',
    'prefix',
    'delimiter',
    'key-marker',
    'upload-id-marker',
    'max-uploads',
    'encoding-type',
  ];
  if (
    method === 'GET' &&
    subresources.includes('uploads') &&
    subresources.every((s) => uploadListing.includes(s))
  )
    return listUploads(deps, r, deps.buckets.access(bucket, r.auth.accessKeyId));
  if (method === 'POST' && subresources.length === 1 && subresources[0] === 'delete')
    return deleteObjects(deps, r, deps.buckets.access(bucket, r.auth.accessKeyId));
  if (method === 'DELETE' && subresources.length === 0) {
    const access = deps.buckets.access(bucket, r.auth.accessKeyId);
    if (!access.isOwner) throw new S3Error('AccessDenied', 'Only the owner of a bucket may delete it');
    if (!(await deps.objects.isEmpty(access.id, r.id)))
      throw new S3Error('BucketNotEmpty', 'The bucket you tried to delete is not empty');
    if ((await deps.multipart.list(access.id, '', { key: '', upload: '' }, 1, r.id)).uploads.length > 0)
      throw new S3Error('BucketNotEmpty', 'The bucket you tried to delete has multipart uploads in progress');
    await deps.buckets.remove(bucket);
    r.res.statusCode = 204;
    r.res.end();
    return;
  }
  const what =
    subresources.length > 0 ? `the ?${subresources.join('&')} sub-resource` : `${method} on a bucket`;
  throw notImplemented(what);
}

/**
 * A bucket's configurations Shoal does not have, read back as S3 reads back one never set: the
 * answer is true (no bucket here has versioning, CORS rules, a lifecycle, a policy, encryption,
 * tags, a website, replication, object lock or an access block), and tools that look before they
 * act (the aws CLI, SDK helpers, Terraform, backup tools checking versioning) get on with it.
 * Setting any of them stays 501.
 */
const UNSET_BUCKET_CONFIGURATIONS: Record<
  string,
  { status: 200; root: string; children?: string[] } | { status: 404; code: S3ErrorCode; message: string }
> = {
  versioning: { status: 200, root: 'VersioningConfiguration' },
  accelerate: { status: 200, root: 'AccelerateConfiguration' },
  logging: { status: 200, root: 'BucketLoggingStatus' },
  notification: { status: 200, root: 'NotificationConfiguration' },
  requestPayment: {
    status: 200,
    root: 'RequestPaymentConfiguration',
    children: [element('Payer', 'BucketOwner')],
  },
  cors: { status: 404, code: 'NoSuchCORSConfiguration', message: 'The CORS configuration does not exist' },
  lifecycle: {
    status: 404,
    code: 'NoSuchLifecycleConfiguration',
    message: 'The lifecycle configuration does not exist',
  },
  policy: { status: 404, code: 'NoSuchBucketPolicy', message: 'The bucket policy does not exist' },
  encryption: {
    status: 404,
    code: 'ServerSideEncryptionConfigurationNotFoundError',
    message: 'The server side encryption configuration was not found',
  },
  tagging: { status: 404, code: 'NoSuchTagSet', message: 'The TagSet does not exist' },
  website: {
    status: 404,
    code: 'NoSuchWebsiteConfiguration',
    message: 'The specified bucket does not have a website configuration',
  },
  replication: {
    status: 404,
    code: 'ReplicationConfigurationNotFoundError',
    message: 'The replication configuration was not found',
  },
  'object-lock': {
    status: 404,
    code: 'ObjectLockConfigurationNotFoundError',
    message: 'Object Lock configuration does not exist for this bucket',
  },
  publicAccessBlock: {
    status: 404,
    code: 'NoSuchPublicAccessBlockConfiguration',
    message: 'The public access block configuration was not found',
  },
};

async function createBucket(deps: S3Deps, r: S3Request, bucket: string): Promise<void> {
  refuseUnsupportedWrite(r);
  const body = (await readSmallBody(r.req, r.auth, MAX_SMALL_BODY)).toString('utf8');
  if (body.trim() !== '') {
    if (!/<CreateBucketConfiguration[\s>]/.test(body))
      throw new S3Error('MalformedXML', 'The XML you provided was not well-formed or did not validate');
    const constraint = textOf(body, 'LocationConstraint') ?? '';
    if (constraint !== '' && constraint !== deps.region)
      throw new S3Error(
        'InvalidLocationConstraint',
        `The specified location-constraint is not valid: this endpoint is region ${deps.region}`,
      );
  }
  const outcome = await deps.buckets.create(bucket, r.auth.accessKeyId);
  // S3 answers a repeated create by the owner with success in us-east-1 only (its legacy region).
  if (outcome === 'owned' && deps.region !== 'us-east-1')
    throw new S3Error(
      'BucketAlreadyOwnedByYou',
      'Your previous request to create the named bucket succeeded and you already own it.',
    );
  if (outcome === 'created') deps.log.info({ bucket, accessKeyId: r.auth.accessKeyId }, 'S3 bucket created');
  r.res.statusCode = 200;
  r.res.setHeader('Location', `/${bucket}`);
  r.res.setHeader('Content-Length', '0');
  r.res.end();
}

function notImplemented(what: string): S3Error {
  return new S3Error('NotImplemented', `Shoal's S3 API does not implement ${what} yet.`);
}

function answerError(
  deps: S3Deps,
  req: IncomingMessage,
  res: ServerResponse,
  id: string,
  err: unknown,
): void {
  const known = err instanceof S3Error ? err : err instanceof ShoalError ? fromStorage(err) : undefined;
  if (!known) deps.log.error({ reqId: id, err: errorText(err) }, 'S3 request failed unexpectedly');
  const error = known ?? new S3Error('InternalError', 'We encountered an internal error. Please try again.');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // The rest of a refused body is read and thrown away (bounded), so the client sees the answer.
  if (!req.complete) {
    req.unpipe();
    req.resume();
    res.once('finish', () => setTimeout(() => req.complete || req.destroy(), 2_000).unref());
  }
  if (req.method === 'HEAD') {
    res.statusCode = error.httpStatus;
    res.setHeader('x-amz-error-code', error.code);
    res.end();
    return;
  }
  const resource = (req.url ?? '/').split('?')[0]!;
  sendXml(
    res,
    error.httpStatus,
    `<?xml version="1.0" encoding="UTF-8"?>\n${element('Error', [
      element('Code', error.code),
      element('Message', error.message),
      element('Resource', resource),
      element('RequestId', id),
    ])}`,
  );
}

/** The S3 error for what the storage engine refused with. */
const FROM_STORAGE: Partial<Record<ErrorCode, S3ErrorCode>> = {
  payload_too_large: 'EntityTooLarge',
  quorum_unavailable: 'ServiceUnavailable',
  replica_unavailable: 'ServiceUnavailable',
  not_ready: 'ServiceUnavailable',
  too_many_uploads: 'SlowDown',
  insufficient_storage: 'InsufficientStorage',
  not_found: 'NoSuchKey',
  bad_request: 'InvalidRequest',
  request_timeout: 'IncompleteBody',
};

function fromStorage(err: ShoalError): S3Error | undefined {
  const code = FROM_STORAGE[err.code];
  return code ? new S3Error(code, err.message) : undefined;
}
