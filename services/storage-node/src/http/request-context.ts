import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HEADER_REQUEST_ID } from '../../../../shared/protocol';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Carried across node-to-node calls so one upload can be followed through every node's log. */
      reqId: string;
    }
  }
}

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

export function requestId(): RequestHandler {
  return (req, res, next) => {
    req.reqId = assignRequestId(req, res);
    next();
  };
}

/** The request's id: the one it carries when well-formed, a new one otherwise; echoed in the answer. */
export function assignRequestId(req: IncomingMessage, res: ServerResponse): string {
  const given = req.headers[HEADER_REQUEST_ID];
  const id = typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
  res.setHeader(HEADER_REQUEST_ID, id);
  return id;
}
