import type { ErrorRequestHandler } from 'express';
import { MulterError } from 'multer';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ShoalError, errorBody, errorText, isNoSpaceError } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import { capDrain, MULTIPART_LIMITS, PART_HEADER_MAX_BYTES } from '../files/upload';
import { sendJson } from './file-response';

export function sendError(res: ServerResponse, err: ShoalError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.statusCode = err.httpStatus;
  sendJson(res, errorBody(err.code, err.message));
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
      case 'LIMIT_PART_COUNT':
        return new ShoalError('multipart_limit', `too many parts: at most ${MULTIPART_LIMITS.parts} parts`);
      case 'LIMIT_FIELD_COUNT':
        return new ShoalError(
          'multipart_limit',
          `too many fields: at most ${MULTIPART_LIMITS.fields} fields besides the file`,
        );
      case 'LIMIT_FIELD_KEY':
        return new ShoalError(
          'multipart_limit',
          `a part name is longer than ${MULTIPART_LIMITS.fieldNameSize} characters`,
        );
      case 'LIMIT_FIELD_VALUE':
        return new ShoalError(
          'multipart_limit',
          `a field value is longer than ${MULTIPART_LIMITS.fieldSize} bytes`,
        );
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
  // busboy says the same for a part header block over its size cap and for one that does not parse.
  if (typeof e?.message === 'string' && /malformed part header/i.test(e.message)) {
    return new ShoalError(
      'malformed_part_header',
      `the headers of a part are malformed or larger than ${PART_HEADER_MAX_BYTES} bytes`,
    );
  }
  if (typeof e?.message === 'string' && /multipart|boundary|unexpected end of form/i.test(e.message)) {
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

/** Codes of the errors a stream reports when the other end of its connection went away. */
const HUNG_UP = new Set(['ECONNRESET', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE']);

/**
 * The client hung up before its answer (a peer's coordinator giving up on a replica, a closed
 * browser tab): its connection is gone and the error is only the echo of that. Nothing is wrong
 * here, and there is nobody left to answer.
 */
function clientWentAway(req: IncomingMessage, err: unknown): boolean {
  return req.socket.destroyed && HUNG_UP.has(String((err as { code?: unknown } | undefined)?.code));
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => answerError(log, req, res, req.reqId, err);
}

/** Answers a request that failed with `err`: express's last handler, and the read lane's. */
export function answerError(
  log: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  reqId: string,
  err: unknown,
): void {
  if (clientWentAway(req, err)) {
    log.info({ reqId, err: errorText(err) }, 'client went away before the answer');
    res.destroy();
    return;
  }
  capDrain(req, res);
  const known = toShoalError(err);
  if (known) {
    if (known.httpStatus >= 500) log.warn({ reqId, code: known.code, err: known.message }, 'request failed');
    sendError(res, known);
    return;
  }
  log.error({ reqId, err }, 'unexpected error');
  sendError(res, new ShoalError('internal', 'internal error; the node log has the details'));
}

/** How long a socket refused by the HTTP parser stays open after its answer, so the client can read it. */
const REFUSED_SOCKET_GRACE_MS = 2_000;

/**
 * Answers what Node's HTTP parser refuses before express runs (a header block over the limit, a
 * malformed request line or header, headers that do not arrive in time) with the same JSON error
 * as every other refusal, instead of Node's bare status line. For the http.Server 'clientError'
 * event. Never logs the request: its headers may hold API keys.
 */
export function clientErrorHandler(options: {
  maxHeaderBytes: number;
  log: Logger;
  onRefused?: (status: number) => void;
}): (err: NodeJS.ErrnoException, socket: Duplex) => void {
  // The parser reports its error again for every later chunk from the same socket; one answer.
  const answered = new WeakSet<Duplex>();
  return (err, socket) => {
    if (answered.has(socket)) return;
    // A response already under way on this keep-alive socket must not get bytes spliced into it.
    const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    answered.add(socket);
    const refusal = parserRefusal(err, options.maxHeaderBytes);
    options.log.debug({ code: err.code, status: refusal.httpStatus }, 'HTTP parser refused a request');
    options.onRefused?.(refusal.httpStatus);
    const body = JSON.stringify(errorBody(refusal.code, refusal.message));
    socket.end(
      `HTTP/1.1 ${refusal.httpStatus} ${STATUS_CODES[refusal.httpStatus] ?? ''}\r\n` +
        'Content-Type: application/json; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        'Connection: close\r\n\r\n' +
        body,
    );
    // end() leaves the read side open (http.Server allows half-open sockets): a client still
    // sending its oversized headers would otherwise hold the socket as long as it liked.
    setTimeout(() => socket.destroy(), REFUSED_SOCKET_GRACE_MS).unref();
  };
}

function parserRefusal(err: NodeJS.ErrnoException, maxHeaderBytes: number): ShoalError {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return new ShoalError(
        'headers_too_large',
        `the request line and headers are larger than ${maxHeaderBytes} bytes`,
      );
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new ShoalError('payload_too_large', 'the chunk extensions of the request body are too large');
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new ShoalError('request_timeout', 'the request headers did not arrive in time');
    default:
      // The parser's code (HPE_INVALID_METHOD, ...) names what was wrong without echoing the request.
      return new ShoalError('bad_request', `malformed HTTP request${err.code ? ` (${err.code})` : ''}`);
  }
}
