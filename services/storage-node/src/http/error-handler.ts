import type { ErrorRequestHandler, Response } from 'express';
import { MulterError } from 'multer';
import { ShoalError, errorBody, isNoSpaceError } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';

export function sendError(res: Response, err: ShoalError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.status(err.httpStatus).json(errorBody(err.code, err.message));
}

/** Turns whatever went wrong into one of the contract's JSON errors. */
export function toShoalError(err: unknown): ShoalError | undefined {
  if (err instanceof ShoalError) return err;
  if (err instanceof MulterError) {
    switch (err.code) {
      case 'LIMIT_FILE_SIZE':
        return new ShoalError('payload_too_large', 'the file is larger than the size limit');
      case 'LIMIT_UNEXPECTED_FILE':
      case 'LIMIT_FILE_COUNT':
        return new ShoalError('bad_request', 'send exactly one file, in a part named "file"');
      default:
        return new ShoalError('bad_request', `multipart body refused: ${err.message}`);
    }
  }
  const e = err as { type?: string; status?: number; message?: string; code?: string };
  if (isNoSpaceError(err)) return new ShoalError('insufficient_storage', 'no space left on this node');
  // body-parser and busboy report malformed input with a 4xx status or a well-known message.
  if (e?.type === 'entity.parse.failed') return new ShoalError('bad_request', 'the JSON body does not parse');
  if (e?.type === 'entity.too.large')
    return new ShoalError('payload_too_large', 'the request body is too large');
  if (
    typeof e?.message === 'string' &&
    /multipart|boundary|unexpected end of form|malformed part header/i.test(e.message)
  ) {
    return new ShoalError('malformed_multipart', `malformed multipart body: ${e.message}`);
  }
  if (typeof e?.message === 'string' && /request (aborted|closed)/i.test(e.message)) {
    return new ShoalError('bad_request', 'the client went away before the upload ended');
  }
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
    return new ShoalError('bad_request', e.message ?? 'bad request');
  }
  return undefined;
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const known = toShoalError(err);
    if (known) {
      if (known.httpStatus >= 500)
        log.warn({ reqId: req.reqId, code: known.code, err: known.message }, 'request failed');
      sendError(res, known);
      return;
    }
    log.error({ reqId: req.reqId, err }, 'unexpected error');
    sendError(res, new ShoalError('internal', 'internal error; the node log has the details'));
  };
}
