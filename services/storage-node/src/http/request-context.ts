import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
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
    const given = req.get(HEADER_REQUEST_ID);
    req.reqId = given && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
    res.setHeader(HEADER_REQUEST_ID, req.reqId);
    next();
  };
}
