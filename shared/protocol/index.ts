/**
 * The node-to-node protocol: routes, headers and message shapes every node speaks, as zod
 * schemas that both ends check against. Kept in one place so the client (peers/) and the server
 * (http/) cannot drift apart.
 *
 *   fields.ts    rules for single fields (ids, sha256, URLs, timestamps, counts) and limits
 *   messages.ts  every request and answer body, and the x-shoal-meta header
 *   routes.ts    the route table (method, path, schemas) and `check`
 */

export const HEADER_AUTH = 'x-shoal-auth';
export const HEADER_NODE = 'x-shoal-node';
export const HEADER_REQUEST_ID = 'x-request-id';
export const HEADER_META = 'x-shoal-meta';
/**
 * On a read of a peer's copy: asks for framed blocks (shared/blocks.ts); on the answer, the index
 * of the first block sent.
 */
export const HEADER_FRAMED = 'x-shoal-framed';

export * from './fields';
export * from './messages';
export * from './routes';
