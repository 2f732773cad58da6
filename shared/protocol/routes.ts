import { z } from 'zod';
import { FileId, PARTITION_COUNT, Timestamp, UploadToken, decimal } from './fields';
import {
  CommitAnswerSchema,
  CommitBatchAnswerSchema,
  CommitBatchRequestSchema,
  CommitRequestSchema,
  DeleteAnswerSchema,
  DeleteRequestSchema,
  DigestsAnswerSchema,
  DigestsRequestSchema,
  FileRecordSchema,
  ForgetAnswerSchema,
  ForgetRequestSchema,
  GossipMessageSchema,
  LocalListingSchema,
  MAX_LISTING_PAGE,
  MAX_TOMBSTONE_PAGE,
  NodeStatusSchema,
  PartitionRecordsSchema,
  PingAnswerSchema,
  PreparedUploadSchema,
  ProbeAnswerSchema,
  ProbeRequestSchema,
  RegistryMergeAnswerSchema,
  RegistryMergeRequestSchema,
  RegistrySyncAnswerSchema,
  RegistrySyncRequestSchema,
  PullAnswerSchema,
  PullRequestSchema,
  CatchUpAnswerSchema,
  StoreCopiesAnswerSchema,
  StoreCopiesRequestSchema,
  ReadCopiesAnswerSchema,
  ReadCopiesRequestSchema,
  ObjectListRequestSchema,
  ObjectListingSchema,
  ObjectVersionsAnswerSchema,
  ObjectVersionsRequestSchema,
  ObjectLookupBatchRequestSchema,
  ObjectLookupBatchAnswerSchema,
  UploadListRequestSchema,
  UploadListingSchema,
} from './messages';

export const INTERNAL_PREFIX = '/internal/v1';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** One internal route: where it is, and the schema of each thing that crosses it. */
export interface RouteSpec {
  readonly method: Method;
  /** The express pattern under INTERNAL_PREFIX; `:name` is a path parameter. */
  readonly pattern: string;
  /** Left out: no path parameters. */
  readonly params?: z.ZodType;
  /** Left out: no query fields (any sent are ignored). */
  readonly query?: z.ZodType;
  /** The JSON body. Left out: none, or a byte stream (then no JSON body may come). */
  readonly body?: z.ZodType;
  /** The JSON answer. Left out: none (a 204), or the file's bytes. */
  readonly answer?: z.ZodType;
}

const NO_PARAMS = z.object({});
const NO_QUERY = z.object({});
const NO_BODY = z.undefined('this route takes no JSON body');
const NO_ANSWER = z.undefined('this route answers no JSON');

/** The schema a route has for `key`, or the one that stands for "none". */
type SchemaOf<S extends RouteSpec, K extends keyof RouteSpec, None extends z.ZodType> = S extends {
  readonly [P in K]: infer T extends z.ZodType;
}
  ? T
  : None;
type ParamsOf<S extends RouteSpec> = SchemaOf<S, 'params', typeof NO_PARAMS>;
type QueryOf<S extends RouteSpec> = SchemaOf<S, 'query', typeof NO_QUERY>;
type BodyOf<S extends RouteSpec> = SchemaOf<S, 'body', typeof NO_BODY>;
type AnswerOf<S extends RouteSpec> = SchemaOf<S, 'answer', typeof NO_ANSWER>;

/** The names of a pattern's parameters: '/blobs/:id/commit' -> 'id'. */
type ParamNames<P extends string> = P extends `${string}:${infer Name}/${infer Rest}`
  ? Name | ParamNames<`/${Rest}`>
  : P extends `${string}:${infer Name}`
    ? Name
    : never;

/** What a path is built from: the pattern's parameters and the query's fields, in one object. */
export type PathArgs<S extends RouteSpec> = {
  readonly [K in ParamNames<S['pattern']>]: string | number;
} & (S extends { readonly query: infer Q extends z.ZodType } ? z.output<Q> : unknown);

export interface InternalRoute<S extends RouteSpec = RouteSpec> {
  readonly name: string;
  readonly method: S['method'];
  readonly pattern: S['pattern'];
  // Typed by what they produce, so generic code (the server's parsing, the client's call) can run
  // them through check() and keep the type without following zod's own generics.
  readonly params: z.ZodType<z.output<ParamsOf<S>>>;
  readonly query: z.ZodType<z.output<QueryOf<S>>>;
  readonly body: z.ZodType<z.output<BodyOf<S>>>;
  readonly answer: z.ZodType<z.output<AnswerOf<S>>>;
  /** The path to request, INTERNAL_PREFIX and query string included, each value URL-encoded. */
  path(...args: keyof PathArgs<S> extends never ? [] : [PathArgs<S>]): string;
}

/** What a route's handler receives once params, query and body have passed their schemas. */
export interface RouteRequest<S extends RouteSpec> {
  params: z.output<ParamsOf<S>>;
  query: z.output<QueryOf<S>>;
  body: z.output<BodyOf<S>>;
}
/** What a route's handler answers: what the caller's answer schema will check. */
export type RouteAnswer<S extends RouteSpec> = S extends { readonly answer: z.ZodType }
  ? z.input<S['answer']>
  : void;
/** What a caller gets once the answer has passed its schema. */
export type CheckedAnswer<S extends RouteSpec> = z.output<AnswerOf<S>>;
/** The JSON body a caller sends. */
export type RouteBody<S extends RouteSpec> = z.input<BodyOf<S>>;

function defineRoutes<const T extends Record<string, RouteSpec>>(
  specs: T,
): { readonly [K in keyof T]: InternalRoute<T[K]> } {
  const table: Record<
    string,
    Required<RouteSpec> & { name: string; path(args?: Record<string, unknown>): string }
  > = {};
  for (const [name, spec] of Object.entries(specs)) {
    // Split once here, so building a path is a few concatenations: ['/blobs/', ':id', '/commit'].
    const parts = spec.pattern.split(/(:[A-Za-z]+)/).filter((part) => part !== '');
    const paramNames = new Set(parts.filter((p) => p.startsWith(':')).map((p) => p.slice(1)));
    table[name] = {
      name,
      method: spec.method,
      pattern: spec.pattern,
      params: spec.params ?? NO_PARAMS,
      query: spec.query ?? NO_QUERY,
      body: spec.body ?? NO_BODY,
      answer: spec.answer ?? NO_ANSWER,
      path(args?: Record<string, unknown>): string {
        let path = INTERNAL_PREFIX;
        for (const part of parts) {
          path += part.startsWith(':') ? encodeURIComponent(String(args?.[part.slice(1)])) : part;
        }
        const query = new URLSearchParams();
        for (const [key, value] of Object.entries(args ?? {})) {
          if (!paramNames.has(key)) query.append(key, String(value));
        }
        const search = query.toString();
        return search === '' ? path : `${path}?${search}`;
      },
    };
  }
  // The loop above builds exactly the mapped type; TypeScript cannot follow Object.entries.
  return table as unknown as { readonly [K in keyof T]: InternalRoute<T[K]> };
}

const IdParams = z.object({ id: FileId });

/**
 * Every route one node may call on another, used by both ends: PeerClient builds its requests
 * from these and checks each answer against `answer`; the server mounts each one at `pattern` and
 * checks params, query and body before its handler runs. Neither side types out a path.
 */
export const INTERNAL_ROUTES = defineRoutes({
  /** SWIM push-pull: the caller's member list in, this node's out. */
  gossip: { method: 'POST', pattern: '/gossip', body: GossipMessageSchema, answer: GossipMessageSchema },
  /** SWIM ping-req: probe a member on the caller's behalf. */
  probe: { method: 'POST', pattern: '/probe', body: ProbeRequestSchema, answer: ProbeAnswerSchema },
  ping: { method: 'GET', pattern: '/ping', answer: PingAnswerSchema },
  status: { method: 'GET', pattern: '/status', answer: NodeStatusSchema },
  /** The body is the file's bytes, kept as an fsync'd temp copy until commit or abort. */
  prepare: { method: 'PUT', pattern: '/blobs/:id', params: IdParams, answer: PreparedUploadSchema },
  commit: {
    method: 'POST',
    pattern: '/blobs/:id/commit',
    params: IdParams,
    body: CommitRequestSchema,
    answer: CommitAnswerSchema,
  },
  /** Commits of several files at once (what `commit` does for each); see CommitBatchRequestSchema. */
  commitBatch: {
    method: 'POST',
    pattern: '/commits',
    body: CommitBatchRequestSchema,
    answer: CommitBatchAnswerSchema,
  },
  abort: { method: 'DELETE', pattern: '/uploads/:token', params: z.object({ token: UploadToken }) },
  delete: {
    method: 'POST',
    pattern: '/blobs/:id/delete',
    params: IdParams,
    body: DeleteRequestSchema,
    answer: DeleteAnswerSchema,
  },
  /**
   * Tombstones made at or after `since`, oldest first, with the answering node's own catch-up
   * state: a returning node's catch-up. Answered while the node is catching up itself, so a whole
   * cluster that restarts at once comes up from its members' tombstones.
   */
  catchUp: {
    method: 'GET',
    pattern: '/catch-up',
    query: z.object({ since: Timestamp, limit: decimal(1, MAX_TOMBSTONE_PAGE, 'limit') }),
    answer: CatchUpAnswerSchema,
  },
  digests: { method: 'POST', pattern: '/digests', body: DigestsRequestSchema, answer: DigestsAnswerSchema },
  partitionRecords: {
    method: 'GET',
    pattern: '/partitions/:p/records',
    params: z.object({ p: decimal(0, PARTITION_COUNT - 1, 'partition') }),
    answer: PartitionRecordsSchema,
  },
  pull: {
    method: 'POST',
    pattern: '/blobs/:id/pull',
    params: IdParams,
    body: PullRequestSchema,
    answer: PullAnswerSchema,
  },
  /** Small copies with their bytes, checked and stored in one transaction (repair, rebalance). */
  storeCopies: {
    method: 'POST',
    pattern: '/copies',
    body: StoreCopiesRequestSchema,
    answer: StoreCopiesAnswerSchema,
  },
  /** This node's small copies of some files, bytes and all (a leader that lacks them). */
  readCopies: {
    method: 'POST',
    pattern: '/copies/read',
    body: ReadCopiesRequestSchema,
    answer: ReadCopiesAnswerSchema,
  },
  forget: {
    method: 'POST',
    pattern: '/blobs/:id/forget',
    params: IdParams,
    body: ForgetRequestSchema,
    answer: ForgetAnswerSchema,
  },
  record: { method: 'GET', pattern: '/records/:id', params: IdParams, answer: FileRecordSchema },
  /** This node's records (live and tombstones) after `after`, in byte order of id. */
  listing: {
    method: 'GET',
    pattern: '/records',
    query: z.object({
      after: z.union([FileId, z.literal('')], '"after" is a file id or empty'),
      limit: decimal(1, MAX_LISTING_PAGE, 'limit'),
    }),
    answer: LocalListingSchema,
  },
  /** The live versions of one S3 key this node holds, newest first (POST: keys are long). */
  objectVersions: {
    method: 'POST',
    pattern: '/objects/versions',
    body: ObjectVersionsRequestSchema,
    answer: ObjectVersionsAnswerSchema,
  },
  /** The live versions of several S3 keys (ObjectLookupBatchRequestSchema). */
  objectLookupBatch: {
    method: 'POST',
    pattern: '/objects/lookups',
    body: ObjectLookupBatchRequestSchema,
    answer: ObjectLookupBatchAnswerSchema,
  },
  /** This node's next entries of a bucket listing (s3/listing.ts). */
  objectListing: {
    method: 'POST',
    pattern: '/objects/list',
    body: ObjectListRequestSchema,
    answer: ObjectListingSchema,
  },
  /** The records of a bucket's multipart uploads this node holds, after a (key, upload id). */
  uploadListing: {
    method: 'POST',
    pattern: '/objects/uploads',
    body: UploadListRequestSchema,
    answer: UploadListingSchema,
  },
  /** The cluster registry's anti-entropy: the caller's digest in; every entry out when they differ. */
  registrySync: {
    method: 'POST',
    pattern: '/registry/sync',
    body: RegistrySyncRequestSchema,
    answer: RegistrySyncAnswerSchema,
  },
  /** Registry entries to take where they are newer (a write pushed at once, or a sync's other half). */
  registryMerge: {
    method: 'POST',
    pattern: '/registry/merge',
    body: RegistryMergeRequestSchema,
    answer: RegistryMergeAnswerSchema,
  },
  /**
   * This node's copy, answered like a public GET (or HEAD: Range, If-None-Match) with the file's
   * record in the x-shoal-meta header.
   */
  blob: { method: 'GET', pattern: '/blobs/:id', params: IdParams },
});

export type InternalRouteName = keyof typeof INTERNAL_ROUTES;

export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * Runs a schema; on failure, says what was wrong in a few words (where and why, never the value
 * itself, which may be large or hostile).
 */
export function check<T>(schema: z.ZodType<T>, value: unknown): Checked<T> {
  const result = schema.safeParse(value);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0];
  if (!issue) return { ok: false, reason: 'invalid' };
  const where = issue.path.map((key) => (typeof key === 'number' ? `[${key}]` : `.${String(key)}`)).join('');
  const reason = (where === '' ? '' : `${where.replace(/^\./, '')}: `) + issue.message;
  return { ok: false, reason: reason.length > 200 ? `${reason.slice(0, 197)}...` : reason };
}
