import type { IncomingMessage, ServerResponse } from 'node:http';
import { ShoalError } from '../../../../shared/errors';
import { isLoopbackHost } from '../config';
import { allows, type Role } from './access';
import type { NodeContext } from './context';

/**
 * The checks and bookkeeping every public request goes through, as plain functions: express's
 * middleware chain (app.ts) and the read lane (read-lane.ts) both call these, so the two cannot
 * drift apart.
 */

/** sameSiteOnly's check: why a request is refused, or undefined when it may go on. */
export function crossSiteRefusal(ctx: NodeContext): (req: IncomingMessage) => ShoalError | undefined {
  const loopback = isLoopbackHost(ctx.config.host);
  const advertised = new URL(ctx.config.advertiseUrl).host.toLowerCase();
  return (req) => {
    const host = (req.headers.host ?? '').toLowerCase();
    if (loopback && host !== advertised && !isLoopbackHost(hostName(host))) {
      return new ShoalError(
        'forbidden',
        `this node answers on loopback only, not for host ${host.slice(0, 100)}`,
      );
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !['GET', 'HEAD', 'OPTIONS'].includes(req.method ?? '')) {
      let from = '';
      try {
        from = new URL(origin).host.toLowerCase();
      } catch {
        // "null" (a sandboxed page, a file: URL) or garbage: not this node's origin.
      }
      if (from !== host) return new ShoalError('forbidden', 'cross-site requests are refused');
    }
    return undefined;
  };
}

/** The host part of a Host header: `127.0.0.1:7001` -> `127.0.0.1`, `[::1]:7001` -> `::1`. */
function hostName(hostHeader: string): string {
  const bracketed = /^\[([^\]]+)\](:\d+)?$/.exec(hostHeader);
  if (bracketed) return bracketed[1]!;
  return hostHeader.replace(/:\d+$/, '');
}

/** A file's own path, /files/<id>. */
export const FILE_PATH = /^\/files\/([A-Za-z0-9_-]{1,64})$/;

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

/** The API key an `Authorization: Bearer` header names, when it may make this request; why not otherwise. */
export function bearerKey(
  ctx: NodeContext,
  authorization: string | undefined,
  method: string,
  path: string,
): { id: string } | ShoalError {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  const key = ctx.apiKeys.find(match?.[1]);
  if (!key) return new ShoalError('unauthorized', 'a valid API key is required: Authorization: Bearer <key>');
  const needed = roleNeeded(method, path);
  if (!allows(key.role, needed))
    return new ShoalError(
      'forbidden',
      `this API key has the ${key.role} role; ${method} ${path} needs ${needed}`,
    );
  return key;
}

/**
 * Counts the request in the metrics once answered, under the route `route()` names then, and lists
 * it as in flight (what a stopping node waits for) until its connection is done with it.
 */
export function measure(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  route: () => string,
): void {
  const end = ctx.metrics.requests.startTimer();
  const method = req.method ?? '';
  ctx.lifecycle.inFlight.set(req, { request: `${method} ${pathOf(req.url)}`, since: Date.now() });
  res.on('close', () => ctx.lifecycle.inFlight.delete(req));
  res.on('finish', () => end({ method, route: route(), status: String(res.statusCode) }));
}

/** A request target's path, without its query string. */
function pathOf(url: string | undefined): string {
  const target = url ?? '';
  const query = target.indexOf('?');
  return query < 0 ? target : target.slice(0, query);
}

/**
 * What every answer carries. Never framed, never sniffed into another type, never a Referer
 * onward. A file's bytes are the uploader's, served from the console's origin: as a sandboxed
 * document with nothing allowed, an HTML file opened here cannot run script or read the console's
 * key. And once stopping, every answer ends its connection: a peer or client that keeps reusing a
 * keep-alive connection would otherwise hold the node open until the shutdown grace runs out.
 */
export function setCommonHeaders(ctx: NodeContext, res: ServerResponse): void {
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'; sandbox");
  if (ctx.lifecycle.stopping) res.setHeader('Connection', 'close');
}
