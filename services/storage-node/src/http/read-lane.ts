import type { Express } from 'express';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { ShoalError } from '../../../../shared/errors';
import { isObjectFileId } from '../../../../shared/ids';
import { FILE_PATH, bearerKey, crossSiteRefusal, measure, setCommonHeaders } from './gate';
import type { NodeContext } from './context';
import { answerError } from './error-handler';
import { sendFile } from './file-response';
import { assignRequestId } from './request-context';

/** The metrics' name for the route, as express names it for the same requests. */
const ROUTE = '/files/:id';

/**
 * Downloads without express. `GET` and `HEAD` of `/files/<id>` are most of what a node answers,
 * and express's routing, its request and response wrappers and the middleware chain cost more
 * CPU than reading and sending a small file (`npm run bench`: 16 KiB downloads went from about
 * 0.19 to 0.12 ms of CPU each, see docs/benchmarks.md).
 *
 * The lane makes the same checks as the middleware chain (loopback host, API key and its role,
 * readiness) with the same functions, and takes a request only when all of them pass: a request
 * that would be refused, a signed link, any other route or form goes to express untouched, so
 * every refusal is answered by one code path. What the lane then does is what the chain and the
 * route do: the request id, the metrics, the common headers, and serveFile.
 */
export function withReadLane(ctx: NodeContext, app: Express): RequestListener {
  const crossSite = ctx.apiKeys.enabled === false ? crossSiteRefusal(ctx) : undefined;
  return (req, res) => {
    const method = req.method;
    // The whole request target: one with a query string (a signed link) is express's.
    const target = method === 'GET' || method === 'HEAD' ? FILE_PATH.exec(req.url ?? '') : null;
    if (
      !target ||
      !ctx.lifecycle.ready ||
      crossSite?.(req) ||
      (ctx.apiKeys.enabled &&
        bearerKey(ctx, req.headers.authorization, method!, req.url!) instanceof ShoalError)
    ) {
      app(req, res);
      return;
    }
    const reqId = assignRequestId(req, res);
    measure(ctx, req, res, () => ROUTE);
    setCommonHeaders(ctx, res);
    serveFile(ctx, req, res, target[1]!, reqId).catch((err: unknown) =>
      answerError(ctx.log, req, res, reqId, err),
    );
  };
}

/** Answers a GET or HEAD of file `id` from whichever copy survives: the lane's and express's route. */
export async function serveFile(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  id: string,
  reqId: string,
): Promise<void> {
  // The files of S3 objects are served through S3 only (see nativeFileId).
  if (isObjectFileId(id)) throw new ShoalError('not_found', 'no such file');
  const read = await ctx.reader.open(id, {
    method: req.method === 'HEAD' ? 'HEAD' : 'GET',
    range: req.headers.range,
    ifNoneMatch: req.headers['if-none-match'],
    reqId,
  });
  await sendFile(res, read.record, read, read.body, (n) => ctx.metrics.bytesOut.inc(n));
}
