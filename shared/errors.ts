import type { ErrorBody } from './protocol';

/**
 * One error type for everything Shoal reports to a client. Each carries a stable machine-readable
 * `code` and the HTTP status it maps to; the HTTP layer renders them in one place.
 */
export type ErrorCode =
  | 'bad_request'
  | 'invalid_id'
  | 'missing_file_part'
  | 'malformed_multipart'
  | 'malformed_part_header'
  | 'multipart_limit'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'request_timeout'
  | 'payload_too_large'
  | 'range_not_satisfiable'
  | 'headers_too_large'
  | 'quorum_unavailable'
  | 'replica_unavailable'
  | 'conflict'
  | 'checksum_mismatch'
  | 'insufficient_storage'
  | 'not_ready'
  | 'too_many_uploads'
  | 'internal';

const STATUS: Record<ErrorCode, number> = {
  bad_request: 400,
  invalid_id: 400,
  missing_file_part: 400,
  malformed_multipart: 400,
  malformed_part_header: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  request_timeout: 408,
  conflict: 409,
  payload_too_large: 413,
  multipart_limit: 413,
  range_not_satisfiable: 416,
  headers_too_large: 431,
  checksum_mismatch: 422,
  internal: 500,
  quorum_unavailable: 503,
  replica_unavailable: 503,
  not_ready: 503,
  too_many_uploads: 503,
  insufficient_storage: 507,
};

export class ShoalError extends Error {
  readonly code: ErrorCode;
  readonly httpStatus: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ShoalError';
    this.code = code;
    this.httpStatus = STATUS[code];
  }
}

/** The HTTP status an error code maps to, for a code a peer sent (undefined: not one of ours). */
export function statusOfCode(code: string): number | undefined {
  return Object.hasOwn(STATUS, code) ? STATUS[code as ErrorCode] : undefined;
}

export function isShoalError(err: unknown): err is ShoalError {
  return err instanceof ShoalError;
}

// The shape is the protocol's (a peer's refusal is checked against it); a type import only, as
// protocol/ imports this module at run time.
export type { ErrorBody };

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

/** Errors from the file system that mean "the disk is full", in any of their spellings. */
export function isNoSpaceError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** The message of anything thrown, for a log field. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
