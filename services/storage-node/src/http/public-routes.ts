import express, { Router, type Request } from 'express';
import multer from 'multer';
import { ShoalError } from '../../../../shared/errors';
import { assertValidId, isObjectFileId, isValidId } from '../../../../shared/ids';
import { MAX_PAGE } from '../files/catalog';
import { feedBusboy, MULTIPART_LIMITS, ReplicatingStorage, type PreparedFile } from '../files/upload';
import { handOff } from '../replication/handoff';
import type { NodeContext } from './context';
import { serveFile } from './read-lane';
import { CONSOLE_CSP_HEADER, consoleHtml } from './console-page';
import type { NodeStatus } from '../../../../shared/protocol';

const DEFAULT_PAGE = 100;
const MAX_LINK_SECONDS = 7 * 24 * 3600;

export function publicRoutes(ctx: NodeContext): Router {
  const router = Router();
  // multer 2.5's streamHandler option is not in @types/multer 2.3.
  const options: multer.Options & { streamHandler: typeof feedBusboy } = {
    storage: new ReplicatingStorage(ctx.writer, (req) => req.reqId),
    // Browsers and curl send UTF-8 file names; busboy would read them as latin1 otherwise.
    defParamCharset: 'utf8',
    limits: MULTIPART_LIMITS,
    streamHandler: feedBusboy,
  };
  const upload = multer(options).single('file');

  router.get('/', (_req, res) => {
    res.setHeader('Content-Security-Policy', CONSOLE_CSP_HEADER);
    res.type('html').send(consoleHtml(ctx.selfId));
  });

  router.post(
    '/files',
    (req, res, next) => {
      if (!req.is('multipart/form-data')) {
        return next(
          new ShoalError('bad_request', 'send multipart/form-data with one file part named "file"'),
        );
      }
      ctx.uploads.admit(req, res);
      next();
    },
    upload,
    async (req, res) => {
      const file = req.file as (Express.Multer.File & { prepared?: PreparedFile }) | undefined;
      const prepared = file?.prepared;
      if (!prepared) throw new ShoalError('missing_file_part', 'the form has no file part named "file"');
      let replicas: string[];
      try {
        replicas = await ctx.writer.commit(prepared.write, prepared.meta, req.reqId);
      } catch (err) {
        ctx.metrics.uploads.inc({ outcome: 'failed' });
        throw err;
      }
      ctx.metrics.uploads.inc({ outcome: 'stored' });
      ctx.metrics.bytesIn.inc(prepared.meta.size);
      ctx.log.info(
        { reqId: req.reqId, fileId: prepared.meta.id, bytes: prepared.meta.size, replicas },
        'file stored',
      );
      res
        .status(201)
        .location(`/files/${prepared.meta.id}`)
        .json({ ...prepared.meta, replicas });
      // Fewer than N copies acknowledged (a replica failed mid-stream): stand-ins take the rest now.
      const alive = ctx.membership.placement().members.length;
      if (replicas.length < Math.min(ctx.config.replicas, alive)) {
        void handOff(prepared.meta, replicas, ctx.membership, ctx.nodes, ctx.log).catch(() => undefined);
      }
    },
  );

  router.get('/files', async (req, res) => {
    const after = req.query.after === undefined ? '' : String(req.query.after);
    if (after !== '' && !isValidId(after)) throw new ShoalError('invalid_id', '"after" must be a file id');
    const limit = req.query.limit === undefined ? DEFAULT_PAGE : Number(req.query.limit);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE) {
      throw new ShoalError('bad_request', `"limit" must be a whole number from 1 to ${MAX_PAGE}`);
    }
    res.json(await ctx.catalog.list(after, limit, req.reqId));
  });

  /**
   * Drain: this node leaves placement and hands every copy to its next owner; it holds nothing
   * (so can be removed) once `files` is 0. Copies are only dropped here after their new owners
   * verified theirs, so a drain never leaves a file with fewer copies. DELETE cancels.
   */
  router.post('/admin/drain', (_req, res) => {
    ctx.membership.setLeaving(true);
    res.status(202).json(drainStatus());
  });
  router.get('/admin/drain', (_req, res) => {
    res.json(drainStatus());
  });
  router.delete('/admin/drain', (_req, res) => {
    ctx.membership.setLeaving(false);
    res.json(drainStatus());
  });
  function drainStatus(): { node: string; draining: boolean; files: number; done: boolean } {
    const draining = ctx.membership.isLeaving(ctx.selfId);
    const { files } = ctx.metadata.counts();
    return { node: ctx.selfId, draining, files, done: draining && files === 0 };
  }

  /**
   * S3 access keys (`shoal key create/ls/rm`): kept in the cluster registry, so one made here
   * signs requests at every node. The secret is in the answer to its creation and nowhere else.
   */
  router.post('/admin/s3/keys', express.json({ limit: '16kb' }), async (req, res) => {
    const name = (req.body as { name?: unknown } | undefined)?.name;
    if (typeof name !== 'string') throw new ShoalError('bad_request', 'send a JSON body {"name": "<label>"}');
    const key = await ctx.s3Keys.create(name);
    ctx.log.info({ reqId: req.reqId, accessKeyId: key.accessKeyId }, 'S3 access key created');
    res.status(201).json(key);
  });
  router.get('/admin/s3/keys', (_req, res) => {
    res.json({ keys: ctx.s3Keys.list() });
  });
  router.delete('/admin/s3/keys/:accessKeyId', async (req, res) => {
    if (!(await ctx.s3Keys.remove(req.params.accessKeyId)))
      throw new ShoalError('not_found', 'no such S3 access key');
    ctx.log.info({ reqId: req.reqId, accessKeyId: req.params.accessKeyId }, 'S3 access key revoked');
    res.status(204).end();
  });

  /** `shoal bucket allow`: another key may read or write a bucket too (rights only ever added here). */
  router.post('/admin/s3/buckets/:bucket/grants', express.json({ limit: '16kb' }), async (req, res) => {
    const { accessKeyId, read, write } = (req.body ?? {}) as {
      accessKeyId?: unknown;
      read?: unknown;
      write?: unknown;
    };
    if (
      typeof accessKeyId !== 'string' ||
      typeof read !== 'boolean' ||
      typeof write !== 'boolean' ||
      !(read || write)
    )
      throw new ShoalError(
        'bad_request',
        'send {"accessKeyId": "...", "read": true|false, "write": true|false}, read or write true',
      );
    if (ctx.s3Keys.secretOf(accessKeyId) === undefined)
      throw new ShoalError('not_found', 'no such S3 access key');
    const bucket = req.params.bucket;
    const now = await ctx.s3Buckets.allow(bucket, accessKeyId, { read, write });
    if (!now) throw new ShoalError('not_found', 'no such bucket');
    ctx.log.info({ reqId: req.reqId, bucket, accessKeyId, ...now }, 'S3 bucket access granted');
    res.json({ bucket, accessKeyId, ...now });
  });

  /** A download link that works without an API key until it expires. */
  router.post('/files/:id/links', express.json({ limit: '16kb' }), async (req, res) => {
    const id = nativeFileId(req.params.id);
    if (!ctx.links.available)
      throw new ShoalError('conflict', 'signed links need a cluster secret; this node runs --insecure');
    const requested = (req.body as { expiresInSeconds?: unknown } | undefined)?.expiresInSeconds ?? 3600;
    if (
      typeof requested !== 'number' ||
      !Number.isInteger(requested) ||
      requested < 1 ||
      requested > MAX_LINK_SECONDS
    ) {
      throw new ShoalError(
        'bad_request',
        `expiresInSeconds must be a whole number from 1 to ${MAX_LINK_SECONDS}`,
      );
    }
    await ctx.reader.open(id, { method: 'HEAD', reqId: req.reqId }); // 404 for a file that does not exist
    const expires = Math.floor(Date.now() / 1000) + requested;
    // Made with a key: the link names it, and dies with it.
    const keyId = (res.locals.apiKeyId as string | undefined) ?? '';
    const sig = ctx.links.sign(id, expires, keyId);
    const path = `/files/${id}?expires=${expires}${keyId === '' ? '' : `&kid=${keyId}`}&sig=${sig}`;
    res
      .status(201)
      .json({ url: ctx.selfUrl + path, path, expiresAt: new Date(expires * 1000).toISOString() });
  });

  router.get('/files/:id/info', async (req, res) => {
    res.json(await ctx.catalog.info(nativeFileId(req.params.id), req.reqId));
  });

  // Most downloads never get here: the read lane (read-lane.ts) answers them before express.
  router.get('/files/:id', async (req: Request, res) => {
    await serveFile(ctx, req, res, nativeFileId(req.params.id), req.reqId);
  });

  router.delete('/files/:id', async (req, res) => {
    const id = nativeFileId(req.params.id);
    await ctx.catalog.delete(id, req.reqId);
    ctx.log.info({ reqId: req.reqId, fileId: id }, 'file deleted');
    res.status(204).end();
  });

  /**
   * The membership view, plus each live node's own figures (files, disk, repair progress) so
   * durability can be watched from any node. A node that does not answer within a second is
   * listed without figures.
   */
  router.get('/cluster', async (_req, res) => {
    const view = ctx.membership.view();
    const statuses = await Promise.all(
      view.map(async (m): Promise<NodeStatus | undefined> => {
        if (m.state === 'dead') return undefined;
        return ctx.nodes
          .get(m.id)
          ?.status(1_000)
          .catch(() => undefined);
      }),
    );
    let underReplicatedFiles = 0;
    let pendingRepairBytes = 0;
    const nodes = view.map(({ publicUrl, url: peerUrl, ...member }, i) => {
      // Clients get the URL they can use; the one peers use is shown when it is another.
      const m = { ...member, url: publicUrl, ...(peerUrl === publicUrl ? {} : { internalUrl: peerUrl }) };
      const s = statuses[i];
      if (!s) return m;
      underReplicatedFiles += s.underReplicatedFiles;
      pendingRepairBytes += s.pendingRepairBytes;
      const { id: _id, url: _url, ...figures } = s;
      return { ...m, ...figures };
    });
    res.json({
      self: ctx.selfId,
      replicas: ctx.config.replicas,
      writeQuorum: ctx.config.writeQuorum,
      underReplicatedFiles,
      pendingRepairBytes,
      nodes,
    });
  });

  return router;
}

/**
 * A file id of the native API. The files that hold S3 objects are the S3 API's (it keeps their
 * versions and index straight): here they do not exist.
 */
function nativeFileId(id: unknown): string {
  const valid = assertValidId(id);
  if (isObjectFileId(valid)) throw new ShoalError('not_found', 'no such file');
  return valid;
}
