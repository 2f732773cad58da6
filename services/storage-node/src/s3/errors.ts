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
  | 'XAmzContentSHA256Mismatch';

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
