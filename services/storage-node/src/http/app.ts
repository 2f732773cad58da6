import express, { type Express, type RequestHandler } from 'express';
import { ShoalError } from '../../../../shared/errors';
import { INTERNAL_PREFIX } from '../../../../shared/protocol';
import { notReadyReason, type NodeContext } from './context';
import { errorHandler, sendError } from './error-handler';
import { FILE_PATH, bearerKey, crossSiteRefusal, measure, setCommonHeaders } from './gate';
import { internalRoutes } from './internal-routes';
import { publicRoutes } from './public-routes';
import { refreshMetrics } from './node-status';
import { requestId } from './request-context';

/** Routes that answer without an API key (probes and scraping) and before the node is ready. */
const OPEN_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * What one listener serves: everything (one port, the default), the public routes only (the
 * main port under --internal-port), or the node-to-node routes only (--internal-port).
 */
export type Listener = 'all' | 'public' | 'internal';

export function buildApp(ctx: NodeContext, serves: Listener = 'all'): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  app.use(requestId());
  app.use((req, res, next) => {
    measure(ctx, req, res, () => {
      const pattern = req.route?.path as string | undefined;
      return pattern ? `${req.baseUrl}${pattern}` : 'unmatched';
    });
    next();
  });
  app.use((_req, res, next) => {
    setCommonHeaders(ctx, res);
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', node: ctx.selfId });
  });
  app.get('/readyz', (_req, res) => {
    if (ctx.lifecycle.ready) res.json({ ready: true, node: ctx.selfId });
    else res.status(503).json({ ready: false, node: ctx.selfId, reason: notReadyReason(ctx.lifecycle) });
  });
  app.get('/metrics', async (_req, res) => {
    await refreshMetrics(ctx);
    res.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });

  if (serves !== 'public') app.use(INTERNAL_PREFIX, internalRoutes(ctx));
  if (serves === 'internal') {
    app.use((_req, _res, next) =>
      next(new ShoalError('not_found', 'this port serves node-to-node routes only')),
    );
    app.use(errorHandler(ctx.log));
    return app;
  }
  if (ctx.apiKeys.enabled === false) app.use(sameSiteOnly(ctx));
  app.use(requireApiKey(ctx));
  app.use((req, res, next) => {
    if (ctx.lifecycle.ready) return next();
    // No "Connection: close": the client may still be sending a body, and must get to read the answer.
    res.setHeader('Retry-After', '1');
    sendError(res, new ShoalError('not_ready', notReadyReason(ctx.lifecycle)));
  });
  app.use(publicRoutes(ctx));

  app.use((_req, _res, next) => next(new ShoalError('not_found', 'no such route')));
  app.use(errorHandler(ctx.log));
  return app;
}

/**
 * Without API keys, a node would do whatever any web page the user visits asks of it: a form or
 * fetch() from another site can POST to http://127.0.0.1:7001/files. So, with keys off:
 * - a request that changes something and carries an Origin (browsers always send one there) must
 *   come from the node's own origin;
 * - a node listening on loopback only answers Host names that are loopback or its own advertised
 *   host, which defeats DNS rebinding (a hostile name that resolves to 127.0.0.1 to read files).
 * Tools (curl, the CLI, SDKs) send no Origin and a loopback Host, and are unaffected.
 */
function sameSiteOnly(ctx: NodeContext): RequestHandler {
  const refusal = crossSiteRefusal(ctx);
  return (req, _res, next) => next(refusal(req));
}

function requireApiKey(ctx: NodeContext): RequestHandler {
  return (req, res, next) => {
    // A signed link stands in for a key, for a GET or HEAD of that one file; a link that does
    // not verify is refused outright, keys or not, so tampering is never silently ignored. A link
    // made with a key works only while that key does.
    const { sig, expires, kid } = req.query as { sig?: unknown; expires?: unknown; kid?: unknown };
    if (sig !== undefined || expires !== undefined || kid !== undefined) {
      const file = FILE_PATH.exec(req.path);
      const keyId = kid === undefined ? '' : kid;
      let verdict =
        file &&
        (req.method === 'GET' || req.method === 'HEAD') &&
        typeof sig === 'string' &&
        typeof expires === 'string' &&
        typeof keyId === 'string'
          ? ctx.links.verify(file[1]!, expires, sig, keyId)
          : 'bad';
      let message = verdict === 'expired' ? 'this link has expired' : 'this link is not valid';
      if (verdict === 'ok' && ctx.apiKeys.enabled && (keyId === '' || !ctx.apiKeys.byId(keyId as string))) {
        verdict = 'bad';
        message = 'the API key that made this link is no longer valid';
      }
      if (verdict === 'ok') return next();
      return next(new ShoalError('forbidden', message));
    }
    if (!ctx.apiKeys.enabled || OPEN_PATHS.has(req.path) || (req.method === 'GET' && req.path === '/'))
      return next();
    const verdict = bearerKey(ctx, req.headers.authorization, req.method, req.path);
    if (verdict instanceof ShoalError) return next(verdict);
    res.locals.apiKeyId = verdict.id;
    next();
  };
}
