import express, { Router, type Request } from 'express';
import { ShoalError } from '../../../../shared/errors';
import { assertValidId, isValidId } from '../../../../shared/ids';
import {
  HEADER_AUTH,
  HEADER_META,
  type CommitRequest,
  type FileMeta,
  type GossipMessage,
} from '../../../../shared/protocol';
import { encodeMeta } from '../peers/peer-client';
import { verifyRequest } from '../peers/auth';
import { MAX_PAGE } from '../files/catalog';
import { PARTITION_COUNT } from '../placement/placement';
import type { NodeContext } from './context';
import { nodeStatus } from './node-status';
import { sendFile } from './file-response';

/**
 * Routes only other nodes may call. Each request must carry a fresh HMAC signature made with the
 * cluster secret over its method and path; clients cannot read or write replicas directly.
 */
export function internalRoutes(ctx: NodeContext): Router {
  const router = Router();

  router.use((req, _res, next) => {
    const secret = ctx.config.clusterSecret;
    if (!secret) return next(); // --insecure
    const verdict = verifyRequest(secret, req.get(HEADER_AUTH), req.method, req.originalUrl);
    if (!verdict.ok) return next(new ShoalError('unauthorized', verdict.reason));
    next();
  });
  router.use(express.json({ limit: '4mb' }));

  router.post('/gossip', (req, res) => {
    const message = req.body as GossipMessage;
    if (!message || !Array.isArray(message.members))
      throw new ShoalError('bad_request', 'gossip needs members');
    res.json(ctx.membership.receive(message));
  });

  router.post('/probe', async (req, res) => {
    const url = typeof req.body?.url === 'string' ? req.body.url : '';
    // Only members may be probed: a probe must never be a way to make a node call anywhere.
    if (!ctx.membership.view().some((m) => m.url === url))
      throw new ShoalError('bad_request', 'not a member URL');
    res.json({ ok: await ctx.membership.probeFor(url) });
  });

  router.get('/ping', (_req, res) => {
    res.json({ ready: ctx.lifecycle.ready });
  });

  router.get('/status', async (_req, res) => {
    res.json(await nodeStatus(ctx));
  });

  router.put('/blobs/:id', async (req, res) => {
    assertValidId(req.params.id);
    if (!ctx.lifecycle.ready) throw new ShoalError('not_ready', 'this node is not taking writes');
    if (ctx.membership.isFull(ctx.selfId)) throw new ShoalError('insufficient_storage', 'this node is full');
    res.json(await ctx.blobs.receive(req));
  });

  router.post('/blobs/:id/commit', async (req, res) => {
    const id = assertValidId(req.params.id);
    const body = req.body as CommitRequest;
    if (!body || typeof body.token !== 'string' || !validMeta(body.meta, id)) {
      throw new ShoalError('bad_request', 'commit needs a token and the file metadata');
    }
    const heldFor = typeof body.heldFor === 'string' ? body.heldFor : null;
    res.json({ result: await ctx.blobs.commit(body.token, body.meta, heldFor) });
  });

  router.delete('/uploads/:token', async (req, res) => {
    await ctx.blobs.abort(String(req.params.token));
    res.status(204).end();
  });

  router.post('/blobs/:id/delete', async (req, res) => {
    const id = assertValidId(req.params.id);
    const deletedAt = typeof req.body?.deletedAt === 'string' ? req.body.deletedAt : new Date().toISOString();
    res.json(await ctx.blobs.delete(id, deletedAt, req.body?.force === true));
  });

  router.get('/tombstones', (req, res) => {
    const since = typeof req.query.since === 'string' ? req.query.since : '';
    const limit = Number(req.query.limit ?? 1000);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000)
      throw new ShoalError('bad_request', 'bad limit');
    res.json(ctx.metadata.tombstonesSince(since, limit));
  });

  router.post('/digests', (req, res) => {
    const bitmap = Buffer.from(typeof req.body?.partitions === 'string' ? req.body.partitions : '', 'base64');
    if (bitmap.length !== PARTITION_COUNT / 8)
      throw new ShoalError('bad_request', 'partitions must be a bitmap');
    const digests: Record<string, string> = {};
    for (let p = 0; p < PARTITION_COUNT; p++) {
      if ((bitmap[p >> 3]! & (1 << (p & 7))) === 0) continue;
      const d = ctx.metadata.digest(p);
      if (d) digests[p] = d;
    }
    res.json({ digests });
  });

  router.get('/partitions/:p/records', (req, res) => {
    const p = Number(req.params.p);
    if (!Number.isInteger(p) || p < 0 || p >= PARTITION_COUNT)
      throw new ShoalError('bad_request', 'bad partition');
    res.json(ctx.metadata.partitionRecords(p));
  });

  router.post('/blobs/:id/pull', async (req, res) => {
    const id = assertValidId(req.params.id);
    const { meta, sources, heldFor } = (req.body ?? {}) as {
      meta?: FileMeta;
      sources?: unknown;
      heldFor?: unknown;
    };
    if (!validMeta(meta, id) || !Array.isArray(sources) || !sources.every((s) => typeof s === 'string')) {
      throw new ShoalError('bad_request', 'pull needs the file metadata and source URLs');
    }
    if (ctx.membership.isFull(ctx.selfId)) throw new ShoalError('insufficient_storage', 'this node is full');
    const known = new Set(ctx.membership.view().map((m) => m.url));
    // Only fetch from cluster members: a pull must never be a way to make a node call anywhere.
    const bytes = await ctx.fetcher.pull(
      meta,
      (sources as string[]).filter((s) => known.has(s)),
      typeof heldFor === 'string' ? heldFor : null,
    );
    res.json({ result: 'stored', bytes });
  });

  router.post('/blobs/:id/forget', async (req, res) => {
    const id = assertValidId(req.params.id);
    const sha256 = typeof req.body?.sha256 === 'string' ? req.body.sha256 : null;
    res.json({ forgotten: await ctx.blobs.forget(id, sha256) });
  });

  router.get('/records/:id', (req, res) => {
    const record = ctx.metadata.get(assertValidId(req.params.id));
    if (!record) throw new ShoalError('not_found', 'no record of that file here');
    res.json(record);
  });

  router.get('/records', async (req, res) => {
    const after = typeof req.query.after === 'string' ? req.query.after : '';
    const limit = Number(req.query.limit ?? 100);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE)
      throw new ShoalError('bad_request', 'bad limit');
    res.json(await ctx.catalog.localListing(after, limit));
  });

  /** This node's own copy, answered like a public GET plus the record in a header. */
  router.get('/blobs/:id', async (req: Request, res) => {
    const id = assertValidId(req.params.id);
    const local = await ctx.reader.openLocal(id, {
      method: req.method === 'HEAD' ? 'HEAD' : 'GET',
      range: req.get('range'),
      ifNoneMatch: req.get('if-none-match'),
    });
    if (local === 'deleted') {
      res.status(410).json({ error: { code: 'deleted', message: 'this file was deleted' } });
      return;
    }
    if (!local) throw new ShoalError('not_found', 'no copy of that file here');
    res.setHeader(HEADER_META, encodeMeta(local.record));
    await sendFile(res, local.record, local, local.body);
  });

  return router;
}

function validMeta(meta: FileMeta | undefined, id: string): meta is FileMeta {
  return (
    meta !== undefined &&
    meta.id === id &&
    isValidId(meta.id) &&
    typeof meta.name === 'string' &&
    Number.isSafeInteger(meta.size) &&
    meta.size >= 0 &&
    typeof meta.sha256 === 'string' &&
    /^[0-9a-f]{64}$/.test(meta.sha256) &&
    typeof meta.contentType === 'string' &&
    typeof meta.createdAt === 'string'
  );
}
