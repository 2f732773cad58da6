import express, { type Express, type RequestHandler } from 'express';
import { ShoalError } from '../../../../shared/errors';
import { INTERNAL_PREFIX } from '../../../../shared/protocol';
import { isLoopbackHost } from '../config';
import { allows, type Role } from './access';
import { notReadyReason, type NodeContext } from './context';
import { errorHandler, sendError } from './error-handler';
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
  app.use(measure(ctx));
  app.use((_req, res, next) => {
    // Every answer: never framed, never sniffed into another type, never a Referer onward. A
    // file's bytes are the uploader's, served from the console's origin: as a sandboxed document
    // with nothing allowed, an HTML file opened here cannot run script or read the console's key.
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'; sandbox");
    next();
  });
  // Once stopping, every answer ends its connection: a peer or client that keeps reusing a
  // keep-alive connection would otherwise hold the node open until the shutdown grace runs out.
  app.use((_req, res, next) => {
    if (ctx.lifecycle.stopping) res.setHeader('Connection', 'close');
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
  const loopback = isLoopbackHost(ctx.config.host);
  const advertised = new URL(ctx.config.advertiseUrl).host.toLowerCase();
  return (req, _res, next) => {
    const host = (req.get('host') ?? '').toLowerCase();
    if (loopback && host !== advertised && !isLoopbackHost(hostName(host))) {
      return next(
        new ShoalError('forbidden', `this node answers on loopback only, not for host ${host.slice(0, 100)}`),
      );
    }
    const origin = req.get('origin');
    if (origin !== undefined && !['GET', 'HEAD', 'OPTIONS'].includes(req.method)) {
      let from = '';
      try {
        from = new URL(origin).host.toLowerCase();
      } catch {
        // "null" (a sandboxed page, a file: URL) or garbage: not this node's origin.
      }
      if (from !== host) return next(new ShoalError('forbidden', 'cross-site requests are refused'));
    }
    next();
  };
}

/** The host part of a Host header: `127.0.0.1:7001` -> `127.0.0.1`, `[::1]:7001` -> `::1`. */
function hostName(hostHeader: string): string {
  const bracketed = /^\[([^\]]+)\](:\d+)?$/.exec(hostHeader);
  if (bracketed) return bracketed[1]!;
  return hostHeader.replace(/:\d+$/, '');
}

const FILE_PATH = /^\/files\/([A-Za-z0-9_-]{1,64})$/;

/**
 * The role a public request needs: `admin` to change the cluster (POST and DELETE under
 * /admin/), `read` to look (GET, HEAD, and making a download link, which only grants a read),
 * `write` for the rest (uploads, deletes).
 */
export function roleNeeded(method: string, path: string): Role {
  if (path.startsWith('/admin/') && method !== 'GET' && method !== 'HEAD') return 'admin';
  if (method === 'GET' || method === 'HEAD' || (method === 'POST' && LINKS_PATH.test(path))) return 'read';
  return 'write';
}

const LINKS_PATH = /^\/files\/[A-Za-z0-9_-]{1,64}\/links$/;

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
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '');
    const key = ctx.apiKeys.find(match?.[1]);
    if (!key) {
      return next(new ShoalError('unauthorized', 'a valid API key is required: Authorization: Bearer <key>'));
    }
    const needed = roleNeeded(req.method, req.path);
    if (!allows(key.role, needed)) {
      return next(
        new ShoalError(
          'forbidden',
          `this API key has the ${key.role} role; ${req.method} ${req.path} needs ${needed}`,
        ),
      );
    }
    res.locals.apiKeyId = key.id;
    next();
  };
}

function measure(ctx: NodeContext): RequestHandler {
  return (req, res, next) => {
    const end = ctx.metrics.requests.startTimer();
    ctx.lifecycle.inFlight.set(req, { request: `${req.method} ${req.path}`, since: Date.now() });
    res.on('close', () => ctx.lifecycle.inFlight.delete(req));
    res.on('finish', () => {
      const pattern = req.route?.path as string | undefined;
      const route = pattern ? `${req.baseUrl}${pattern}` : 'unmatched';
      end({ method: req.method, route, status: String(res.statusCode) });
    });
    next();
  };
}
