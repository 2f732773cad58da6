import express, { Router, type Request, type Response } from 'express';
import type { TLSSocket } from 'node:tls';
import type { z } from 'zod';
import { blocksCovering, framedLength } from '../../../../shared/blocks';
import { ShoalError, errorBody, errorText } from '../../../../shared/errors';
import {
  HEADER_AUTH,
  HEADER_FRAMED,
  HEADER_META,
  HEADER_NODE,
  INTERNAL_ROUTES,
  PARTITION_COUNT,
  check,
  encodeMetaHeader,
  type CommitBatchRequest,
  type ErrorBody,
  type ObjectLookupBatchRequest,
  type InternalRoute,
  type RouteAnswer,
  type RouteRequest,
  type RouteSpec,
} from '../../../../shared/protocol';
import { sha256Hex } from '../../../../shared/hashing';
import { ReplayGuard, STREAMED_BODY, bodyDigest, verifyRequest, type SignedBy } from '../peers/auth';
import type { NodeContext } from './context';
import { sendFile } from './file-response';

/**
 * Routes only other nodes may call. Each request must carry a fresh HMAC signature made with the
 * cluster secret over its method, path and query, the sending node, a nonce and its body
 * (peers/auth.ts); a nonce is accepted once. Clients cannot read or write replicas directly.
 *
 * Every route comes from the protocol's route table, and its params, query and body pass their
 * schemas before the handler runs: a handler only ever sees well-formed input, and anything else
 * is answered 400 `bad_request` saying what was wrong.
 */
export function internalRoutes(ctx: NodeContext): Router {
  const router = Router();
  const routes = INTERNAL_ROUTES;

  const replays = new ReplayGuard();
  router.use((req, _res, next) => {
    // Under --mutual-tls, the connection itself must come from a node: a certificate that
    // chains to --tls-ca, checked in the handshake (rejectUnauthorized is off on the listener so
    // that the public routes take clients without one).
    if (ctx.config.tls?.mutual && !(req.socket as TLSSocket).authorized)
      return next(
        new ShoalError(
          'unauthorized',
          'node-to-node routes need a client certificate signed by the cluster CA',
        ),
      );
    next();
  });
  router.use((req, res, next) => {
    const secrets = ctx.secrets.accepted;
    if (secrets.length === 0) return next(); // --insecure
    const verdict = verifyRequest(secrets, req.get(HEADER_AUTH), req.method, req.originalUrl);
    if (!verdict.ok) return next(new ShoalError('unauthorized', verdict.reason));
    const sender = req.get(HEADER_NODE);
    if (sender !== undefined && sender !== verdict.nodeId)
      return next(new ShoalError('unauthorized', `${HEADER_NODE} is not the node that signed`));
    if (!replays.accept(verdict.nonce, verdict.rememberUntil))
      return next(new ShoalError('unauthorized', 'this node signature was already used'));
    res.locals.signed = verdict;
    next();
  });
  router.use(
    express.json({
      limit: '4mb',
      // The bytes as they came, before parsing: the signature covers exactly these.
      verify: (_req, res, buf) => {
        const signed = (res as Response).locals.signed as SignedBy | undefined;
        if (!signed) return;
        if (signed.bodyDigest !== sha256Hex(buf))
          throw new ShoalError('unauthorized', 'the body is not the one the node signed');
        (res as Response).locals.bodyChecked = true;
      },
    }),
  );

  serve(router, routes.gossip, ({ body }) => ctx.membership.receive(body));

  serve(router, routes.probe, async ({ body }) => {
    // Only members may be probed: a probe must never be a way to make a node call anywhere.
    if (!ctx.membership.view().some((m) => m.url === body.url))
      throw new ShoalError('bad_request', 'not a member URL');
    return { ok: await ctx.membership.probeFor(body.url) };
  });

  serve(router, routes.registrySync, ({ body }) => ctx.registrySync.answer(body.digest));

  serve(router, routes.registryMerge, ({ body }) => ({ merged: ctx.registry.merge(body.entries).length }));

  // Everything else is this node's storage, served by the same LocalNode this node calls when it
  // is one of a file's targets itself: a call from a peer and a call to self behave alike.
  const local = ctx.local;

  serve(router, routes.ping, async () => ({ ready: await local.ping() }));

  serve(router, routes.status, () => local.status());

  serve(router, routes.prepare, ({ params }, req) => local.receive(params.id, req), { streamedBody: true });

  serve(router, routes.commit, async ({ params, body }) => {
    if (body.meta.id !== params.id) throw new ShoalError('bad_request', 'meta.id is not the id in the path');
    return { result: await local.commit(params.id, body) };
  });

  // Each commit of a batch stands alone: one that fails (bytes that do not match, a deleted file)
  // fails only itself. Started together, the small ones share one transaction and one flush.
  serve(router, routes.commitBatch, async ({ body }) => {
    const commitOne = async ({ id, ...commit }: CommitBatchRequest['commits'][number]) => {
      if (commit.meta.id !== id) throw new ShoalError('bad_request', "meta.id is not the commit's id");
      return { result: await local.commit(id, commit) };
    };
    return { results: await eachOnItsOwn(body.commits, commitOne, 'commit', ctx) };
  });

  serve(router, routes.abort, async ({ params }, _req, res) => {
    await local.abort(params.token);
    res.status(204).end();
  });

  serve(router, routes.delete, ({ params, body }) =>
    local.delete(params.id, body.deletedAt, { force: body.force }),
  );

  serve(router, routes.catchUp, ({ query }) => local.catchUp(query.since, query.limit));

  serve(router, routes.digests, async ({ body }) => {
    const bitmap = Buffer.from(body.partitions, 'base64');
    if (bitmap.length !== PARTITION_COUNT / 8)
      throw new ShoalError('bad_request', 'partitions must be a bitmap');
    return { digests: await local.digests(bitmap) };
  });

  serve(router, routes.partitionRecords, ({ params }) => local.partitionRecords(params.p));

  serve(router, routes.pull, async ({ params, body }) => {
    if (body.meta.id !== params.id) throw new ShoalError('bad_request', 'meta.id is not the id in the path');
    const { bytes } = await local.pull(body.meta, body.sources, body.heldFor);
    return { result: 'stored' as const, bytes };
  });

  serve(router, routes.storeCopies, ({ body }) =>
    local
      .storeCopies(body.copies.map((c) => ({ ...c, data: Buffer.from(c.data, 'base64') })))
      .then((results) => ({ results })),
  );

  serve(router, routes.readCopies, async ({ body }) => ({
    copies: (await local.readCopies(body.ids)).map((c) => ({ id: c.id, data: c.data.toString('base64') })),
  }));

  serve(router, routes.forget, async ({ params, body }) => ({
    forgotten: await local.forget(params.id, body.sha256),
  }));

  serve(router, routes.record, async ({ params }) => {
    const record = await local.record(params.id);
    if (!record) throw new ShoalError('not_found', 'no record of that file here');
    return record;
  });

  serve(router, routes.listing, ({ query }) => local.list(query.after, query.limit));

  serve(router, routes.objectVersions, async ({ body }) => ({
    versions: await local.objectVersions(body.bucket, body.key, { upload: body.upload }),
  }));

  serve(router, routes.objectLookupBatch, async ({ body }) => {
    const lookUp = async ({ bucket, key }: ObjectLookupBatchRequest['lookups'][number]) => ({
      versions: await local.objectVersions(bucket, key),
    });
    return { results: await eachOnItsOwn(body.lookups, lookUp, 'key lookup', ctx) };
  });

  serve(router, routes.uploadListing, ({ body }) =>
    local.listUploads(body.bucket, { key: body.afterKey, upload: body.afterUpload }, body.limit),
  );

  serve(router, routes.objectListing, ({ body }) => local.listObjects(body));

  /**
   * This node's own copy, answered like a public GET plus the record in a header; asked for framed
   * blocks, whole blocks behind their checksums (the reader checks them again).
   */
  serve(router, routes.blob, async ({ params }, req, res) => {
    const framed = req.get(HEADER_FRAMED) === '1';
    const read = await local.read(params.id, {
      method: req.method === 'HEAD' ? 'HEAD' : 'GET',
      range: req.get('range'),
      ifNoneMatch: req.get('if-none-match'),
      framed,
    });
    if (read === 'deleted') {
      res.status(410).json({ error: { code: 'deleted', message: 'this file was deleted' } });
      return;
    }
    if (!read) throw new ShoalError('not_found', 'no copy of that file here');
    res.setHeader(HEADER_META, encodeMetaHeader(read.record));
    if (!framed || !read.body) return sendFile(res, read.record, read, read.body);
    const { first, last } = blocksCovering(read.start, read.end);
    res.setHeader(HEADER_FRAMED, String(first));
    await sendFile(res, read.record, read, read.body, undefined, framedLength(read.record.size, first, last));
  });

  return router;
}

/**
 * Mounts one route of the table: checks what came in against the route's schemas, runs the
 * handler, and sends what it returns as JSON. A handler that answers by itself (a 204, a file's
 * bytes) returns nothing. The answer is not checked here: its type is, at compile time, and the
 * caller checks it anyway.
 */
/** Runs `run` on every item of a batch, each answered on its own: its result, or its error. */
async function eachOnItsOwn<I, R>(
  items: readonly I[],
  run: (item: I) => Promise<R>,
  what: string,
  ctx: NodeContext,
): Promise<Array<R | ErrorBody>> {
  const settled = await Promise.allSettled(items.map(run));
  return settled.map((s) => {
    if (s.status === 'fulfilled') return s.value;
    if (s.reason instanceof ShoalError) return errorBody(s.reason.code, s.reason.message);
    ctx.log.error({ err: errorText(s.reason) }, `a batched ${what} failed`);
    return errorBody('internal', `the ${what} failed on this node`);
  });
}

function serve<S extends RouteSpec>(
  router: Router,
  route: InternalRoute<S>,
  handler: (input: RouteRequest<S>, req: Request, res: Response) => RouteAnswer<S> | Promise<RouteAnswer<S>>,
  { streamedBody = false }: { streamedBody?: boolean } = {},
): void {
  router[METHODS[route.method]](route.pattern, async (req, res) => {
    checkSignedBody(res, streamedBody);
    const answer = await handler(parseRequest(route, req), req, res);
    if (answer !== undefined) res.json(answer);
  });
}

/**
 * A signed body was checked as it was parsed; otherwise the signature must say there was none,
 * or, on the one route that streams its body (prepare), that it is streamed.
 */
function checkSignedBody(res: Response, streamedBody: boolean): void {
  const signed = res.locals.signed as SignedBy | undefined;
  if (!signed || res.locals.bodyChecked === true) return;
  const expected = streamedBody ? STREAMED_BODY : bodyDigest(undefined);
  if (signed.bodyDigest !== expected)
    throw new ShoalError('unauthorized', 'the body is not the one the node signed');
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
