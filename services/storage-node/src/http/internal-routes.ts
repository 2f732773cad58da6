import express, { Router, type Request, type Response } from 'express';
import type { z } from 'zod';
import { ShoalError } from '../../../../shared/errors';
import {
  HEADER_AUTH,
  HEADER_META,
  INTERNAL_ROUTES,
  PARTITION_COUNT,
  check,
  encodeMetaHeader,
  type InternalRoute,
  type RouteAnswer,
  type RouteRequest,
  type RouteSpec,
} from '../../../../shared/protocol';
import { verifyRequest } from '../peers/auth';
import type { NodeContext } from './context';
import { nodeStatus } from './node-status';
import { sendFile } from './file-response';

/**
 * Routes only other nodes may call. Each request must carry a fresh HMAC signature made with the
 * cluster secret over its method and path; clients cannot read or write replicas directly.
 *
 * Every route comes from the protocol's route table, and its params, query and body pass their
 * schemas before the handler runs: a handler only ever sees well-formed input, and anything else
 * is answered 400 `bad_request` saying what was wrong.
 */
export function internalRoutes(ctx: NodeContext): Router {
  const router = Router();
  const routes = INTERNAL_ROUTES;

  router.use((req, _res, next) => {
    const secret = ctx.config.clusterSecret;
    if (!secret) return next(); // --insecure
    const verdict = verifyRequest(secret, req.get(HEADER_AUTH), req.method, req.originalUrl);
    if (!verdict.ok) return next(new ShoalError('unauthorized', verdict.reason));
    next();
  });
  router.use(express.json({ limit: '4mb' }));

  serve(router, routes.gossip, ({ body }) => ctx.membership.receive(body));

  serve(router, routes.probe, async ({ body }) => {
    // Only members may be probed: a probe must never be a way to make a node call anywhere.
    if (!ctx.membership.view().some((m) => m.url === body.url))
      throw new ShoalError('bad_request', 'not a member URL');
    return { ok: await ctx.membership.probeFor(body.url) };
  });

  serve(router, routes.ping, () => ({ ready: ctx.lifecycle.ready }));

  serve(router, routes.status, () => nodeStatus(ctx));

  serve(router, routes.prepare, async (_input, req) => {
    if (!ctx.lifecycle.ready) throw new ShoalError('not_ready', 'this node is not taking writes');
    if (ctx.membership.isFull(ctx.selfId)) throw new ShoalError('insufficient_storage', 'this node is full');
    return ctx.blobs.receive(req);
  });

  serve(router, routes.commit, async ({ params, body }) => {
    if (body.meta.id !== params.id) throw new ShoalError('bad_request', 'meta.id is not the id in the path');
    return { result: await ctx.blobs.commit(body.token, body.meta, body.heldFor) };
  });

  serve(router, routes.abort, async ({ params }, _req, res) => {
    await ctx.blobs.abort(params.token);
    res.status(204).end();
  });

  serve(router, routes.delete, ({ params, body }) => ctx.blobs.delete(params.id, body.deletedAt, body.force));

  serve(router, routes.tombstones, ({ query }) => ctx.metadata.tombstonesSince(query.since, query.limit));

  serve(router, routes.digests, ({ body }) => {
    const bitmap = Buffer.from(body.partitions, 'base64');
    if (bitmap.length !== PARTITION_COUNT / 8)
      throw new ShoalError('bad_request', 'partitions must be a bitmap');
    const digests: Record<string, string> = {};
    for (let p = 0; p < PARTITION_COUNT; p++) {
      if ((bitmap[p >> 3]! & (1 << (p & 7))) === 0) continue;
      const d = ctx.metadata.digest(p);
      if (d) digests[p] = d;
    }
    return { digests };
  });

  serve(router, routes.partitionRecords, ({ params }) => ctx.metadata.partitionRecords(params.p));

  serve(router, routes.pull, async ({ params, body }) => {
    if (body.meta.id !== params.id) throw new ShoalError('bad_request', 'meta.id is not the id in the path');
    if (ctx.membership.isFull(ctx.selfId)) throw new ShoalError('insufficient_storage', 'this node is full');
    const known = new Set(ctx.membership.view().map((m) => m.url));
    // Only fetch from cluster members: a pull must never be a way to make a node call anywhere.
    const sources = body.sources.filter((s) => known.has(s));
    const bytes = await ctx.fetcher.pull(body.meta, sources, body.heldFor);
    return { result: 'stored' as const, bytes };
  });

  serve(router, routes.forget, async ({ params, body }) => ({
    forgotten: await ctx.blobs.forget(params.id, body.sha256),
  }));

  serve(router, routes.record, ({ params }) => {
    const record = ctx.metadata.get(params.id);
    if (!record) throw new ShoalError('not_found', 'no record of that file here');
    return record;
  });

  serve(router, routes.listing, ({ query }) => ctx.catalog.localListing(query.after, query.limit));

  /** This node's own copy, answered like a public GET plus the record in a header. */
  serve(router, routes.blob, async ({ params }, req, res) => {
    const local = await ctx.reader.openLocal(params.id, {
      method: req.method === 'HEAD' ? 'HEAD' : 'GET',
      range: req.get('range'),
      ifNoneMatch: req.get('if-none-match'),
    });
    if (local === 'deleted') {
      res.status(410).json({ error: { code: 'deleted', message: 'this file was deleted' } });
      return;
    }
    if (!local) throw new ShoalError('not_found', 'no copy of that file here');
    res.setHeader(HEADER_META, encodeMetaHeader(local.record));
    await sendFile(res, local.record, local, local.body);
  });

  return router;
}

/**
 * Mounts one route of the table: checks what came in against the route's schemas, runs the
 * handler, and sends what it returns as JSON. A handler that answers by itself (a 204, a file's
 * bytes) returns nothing. The answer is not checked here: its type is, at compile time, and the
 * caller checks it anyway.
 */
function serve<S extends RouteSpec>(
  router: Router,
  route: InternalRoute<S>,
  handler: (input: RouteRequest<S>, req: Request, res: Response) => RouteAnswer<S> | Promise<RouteAnswer<S>>,
): void {
  router[METHODS[route.method]](route.pattern, async (req, res) => {
    const answer = await handler(parseRequest(route, req), req, res);
    if (answer !== undefined) res.json(answer);
  });
}

const METHODS = { GET: 'get', POST: 'post', PUT: 'put', DELETE: 'delete' } as const;

function parseRequest<S extends RouteSpec>(route: InternalRoute<S>, req: Request): RouteRequest<S> {
  return {
    params: parsePart(route, 'params', route.params, req.params),
    query: parsePart(route, 'query', route.query, req.query),
    body: parsePart(route, 'body', route.body, req.body),
  };
}

function parsePart<T>(route: { name: string }, part: string, schema: z.ZodType<T>, value: unknown): T {
  const checked = check(schema, value);
  if (!checked.ok) throw new ShoalError('bad_request', `bad ${route.name} ${part}: ${checked.reason}`);
  return checked.value;
}
