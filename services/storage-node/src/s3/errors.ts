/**
 * The errors the S3 front door answers with: S3's own codes and statuses, rendered as S3's XML
 * error document by the S3 listener (clients and SDKs branch on `Code`, not on the message).
 */
export type S3ErrorCode =
  | 'AccessDenied'
  | 'BucketAlreadyExists'
  | 'BucketAlreadyOwnedByYou'
  | 'BucketNotEmpty'
  | 'InternalError'
  | 'InvalidBucketName'
  | 'InvalidLocationConstraint'
  | 'MalformedXML'
  | 'MaxMessageLengthExceeded'
  | 'NoSuchBucket'
  | 'ServiceUnavailable'
  | 'AuthorizationHeaderMalformed'
  | 'AuthorizationQueryParametersError'
  | 'BadDigest'
  | 'IncompleteBody'
  | 'InvalidAccessKeyId'
  | 'InvalidArgument'
  | 'InvalidDigest'
  | 'InvalidRequest'
  | 'MissingContentLength'
  | 'NotImplemented'
  | 'RequestTimeTooSkewed'
  | 'SignatureDoesNotMatch'
  | 'XAmzContentSHA256Mismatch'
  | 'EntityTooLarge'
  | 'EntityTooSmall'
  | 'InsufficientStorage'
  | 'InvalidPart'
  | 'InvalidPartOrder'
  | 'InvalidPartNumber'
  | 'InvalidRange'
  | 'InvalidStorageClass'
  | 'KeyTooLongError'
  | 'MetadataTooLarge'
  | 'NoSuchKey'
  | 'NoSuchUpload'
  | 'PreconditionFailed'
  | 'SlowDown'
  // A bucket configuration read back that was never set (server.ts): S3's own codes, all 404.
  | 'NoSuchCORSConfiguration'
  | 'NoSuchLifecycleConfiguration'
  | 'NoSuchBucketPolicy'
  | 'ServerSideEncryptionConfigurationNotFoundError'
  | 'NoSuchTagSet'
  | 'NoSuchWebsiteConfiguration'
  | 'ReplicationConfigurationNotFoundError'
  | 'ObjectLockConfigurationNotFoundError'
  | 'NoSuchPublicAccessBlockConfiguration';

const STATUS: Record<S3ErrorCode, number> = {
  AccessDenied: 403,
  BucketAlreadyExists: 409,
  BucketAlreadyOwnedByYou: 409,
  BucketNotEmpty: 409,
  InternalError: 500,
  InvalidBucketName: 400,
  InvalidLocationConstraint: 400,
  MalformedXML: 400,
  MaxMessageLengthExceeded: 400,
  NoSuchBucket: 404,
  ServiceUnavailable: 503,
  AuthorizationHeaderMalformed: 400,
  AuthorizationQueryParametersError: 400,
  BadDigest: 400,
  IncompleteBody: 400,
  InvalidAccessKeyId: 403,
  InvalidArgument: 400,
  InvalidDigest: 400,
  InvalidRequest: 400,
  MissingContentLength: 411,
  NotImplemented: 501,
  RequestTimeTooSkewed: 403,
  SignatureDoesNotMatch: 403,
  XAmzContentSHA256Mismatch: 400,
  EntityTooLarge: 400,
  EntityTooSmall: 400,
  // Not one of S3's codes (it never runs out of room); the status says it all.
  InsufficientStorage: 507,
  InvalidPart: 400,
  InvalidPartOrder: 400,
  InvalidPartNumber: 416,
  InvalidRange: 416,
  InvalidStorageClass: 400,
  KeyTooLongError: 400,
  MetadataTooLarge: 400,
  NoSuchKey: 404,
  NoSuchUpload: 404,
  PreconditionFailed: 412,
  SlowDown: 503,
  NoSuchCORSConfiguration: 404,
  NoSuchLifecycleConfiguration: 404,
  NoSuchBucketPolicy: 404,
  ServerSideEncryptionConfigurationNotFoundError: 404,
  NoSuchTagSet: 404,
  NoSuchWebsiteConfiguration: 404,
  ReplicationConfigurationNotFoundError: 404,
  ObjectLockConfigurationNotFoundError: 404,
  NoSuchPublicAccessBlockConfiguration: 404,
};

export class S3Error extends Error {
  readonly httpStatus: number;

  constructor(
    readonly code: S3ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'S3Error';
    this.httpStatus = STATUS[code];
  }
}
