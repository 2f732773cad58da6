import type { Readable } from 'node:stream';
import { Agent, request, errors as undiciErrors, type Dispatcher } from 'undici';
import type { ListRequest } from '../s3/listing';
import { statusOfCode } from '../../../../shared/errors';
import {
  ErrorBodySchema,
  HEADER_AUTH,
  HEADER_FRAMED,
  HEADER_META,
  HEADER_NODE,
  HEADER_REQUEST_ID,
  INTERNAL_ROUTES,
  check,
  decodeMetaHeader,
  type CheckedAnswer,
  type CommitBatchRequest,
  type ErrorBody,
  type ObjectLookupBatchRequest,
  type CommitRequest,
  type FileMeta,
  type ObjectListing,
  type UploadListing,
  type FileRecord,
  type GossipMessage,
  type InternalRoute,
  type LocalListing,
  type NodeStatus,
  type PreparedUpload,
  type RegistryEntry,
  type RouteBody,
  type RouteSpec,
  type CatchUpAnswer,
  type CopyResult,
  type StoreCopiesRequest,
} from '../../../../shared/protocol';
import { STREAMED_BODY, signRequest } from './auth';
import type { ConnectionOptions } from 'node:tls';

/**
 * Why a call to a peer failed: it could not be reached ('unreachable', 'timeout'), it answered
 * with an error status ('status'), or it answered something the protocol does not allow
 * ('protocol': not JSON, or a body or header that fails its schema; `status` is the HTTP status
 * it came with).
 */
export class PeerError extends Error {
  constructor(
    readonly peer: string,
    readonly kind: 'unreachable' | 'timeout' | 'status' | 'protocol',
    message: string,
    readonly status?: number,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PeerError';
  }
}

/** How long a commit (or a batch of them) may take on the peer. */
export const COMMIT_TIMEOUT_MS = 10_000;

/** Added to the time a pull's copy takes at the repair rate before its caller gives up. */
const PULL_MARGIN_MS = 30_000;

export interface PeerClientOptions {
  nodeId: string;
  /** The secret to sign with, or a source of it that may change (a rotation); none: unsigned (--insecure). */
  secret: string | undefined | { readonly signing: string | undefined };
  connectTimeoutMs?: number;
  /** Longest silence allowed on an open request (no headers, or no body bytes). */
  idleTimeoutMs?: number;
  /** The rate a repair copy is expected to make (--repair-bytes-per-sec): how long a pull may take. */
  transferBytesPerSec?: number;
  /** How to connect to peers over https (TlsFiles.peerConnectOptions), and when that changes. */
  tls?: { peerConnectOptions(): ConnectionOptions; onChange(listener: () => void): void };
}

export interface BlobResponse {
  status: number;
  record: FileRecord;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/**
 * The only way one node talks to another. Every call is signed with the cluster secret, has a
 * connect timeout and an idle timeout, and always consumes or destroys the response body so a
 * pooled connection is never left stuck.
 */
export class PeerClient {
  /** File traffic: replica writes, reads, repair. */
  private agent: Agent;
  /**
   * Membership's calls (CONTROL_ROUTES) on connections of their own: with every data connection
   * to a peer held by slow transfers, gossip and probes still go out at once, and the peer is
   * not suspected for the slowness of others' uploads.
   */
  private control: Agent;

  constructor(private readonly options: PeerClientOptions) {
    [this.agent, this.control] = this.agents();
    // A renewed certificate (or CA) takes effect on new connections: new pools take over, and the
    // old ones close once the requests they carry are done.
    options.tls?.onChange(() => {
      const old = [this.agent, this.control];
      [this.agent, this.control] = this.agents();
      for (const agent of old) void agent.close().catch(() => undefined);
    });
  }

  private agents(): [Agent, Agent] {
    const idle = this.options.idleTimeoutMs ?? 30_000;
    const common = {
      connect: { timeout: this.options.connectTimeoutMs ?? 2_000, ...this.options.tls?.peerConnectOptions() },
      headersTimeout: idle,
      bodyTimeout: idle,
      keepAliveTimeout: 10_000,
    };
    return [new Agent({ ...common, connections: 64 }), new Agent({ ...common, connections: 4 })];
  }

  async gossip(baseUrl: string, message: GossipMessage, timeoutMs: number): Promise<GossipMessage> {
    const route = INTERNAL_ROUTES.gossip;
    return this.call(baseUrl, route, route.path(), { body: message, timeoutMs });
  }

  /** Asks `baseUrl` to probe `targetUrl` for us (SWIM ping-req); true when the target answered it. */
  async probe(baseUrl: string, targetUrl: string, timeoutMs: number): Promise<boolean> {
    const route = INTERNAL_ROUTES.probe;
    return (await this.call(baseUrl, route, route.path(), { body: { url: targetUrl }, timeoutMs })).ok;
  }

  /** Cheapest liveness check: is the peer up and taking writes? */
  async ping(baseUrl: string, timeoutMs: number): Promise<boolean> {
    const route = INTERNAL_ROUTES.ping;
    return (await this.call(baseUrl, route, route.path(), { timeoutMs })).ready;
  }

  async status(baseUrl: string, timeoutMs: number): Promise<NodeStatus> {
    const route = INTERNAL_ROUTES.status;
    return this.call(baseUrl, route, route.path(), { timeoutMs });
  }

  /** Streams `body` to the peer, which keeps it as an fsync'd temp file until commit or abort. */
  async prepareUpload(
    baseUrl: string,
    fileId: string,
    body: Readable | Buffer,
    reqId?: string,
    signal?: AbortSignal,
  ): Promise<PreparedUpload> {
    const route = INTERNAL_ROUTES.prepare;
    return this.call(baseUrl, route, route.path({ id: fileId }), { stream: body, reqId, signal });
  }

  async commitUpload(
    baseUrl: string,
    fileId: string,
    commit: CommitRequest,
    reqId?: string,
  ): Promise<'stored' | 'already-stored'> {
    const route = INTERNAL_ROUTES.commit;
    const answer = await this.call(baseUrl, route, route.path({ id: fileId }), {
      body: commit,
      reqId,
      timeoutMs: COMMIT_TIMEOUT_MS,
    });
    return answer.result;
  }

  /**
   * Several commits in one request. One result per commit, in order: the result, or the PeerError
   * that commit alone failed with. A peer that does not know the route (an older version, during
   * a rolling upgrade) answers 404: the caller commits one by one instead.
   */
  async commitBatch(
    baseUrl: string,
    commits: CommitBatchRequest['commits'],
    reqId?: string,
  ): Promise<Array<'stored' | 'already-stored' | PeerError>> {
    const route = INTERNAL_ROUTES.commitBatch;
    const answer = await this.call(baseUrl, route, route.path(), {
      body: { commits },
      reqId,
      timeoutMs: COMMIT_TIMEOUT_MS,
    });
    const results = this.oneEach(baseUrl, route, answer.results, commits.length);
    return results.map((r) => ('result' in r ? r.result : this.refused(baseUrl, 'commit', r.error)));
  }

  async abortUpload(baseUrl: string, token: string, reqId?: string): Promise<void> {
    const route = INTERNAL_ROUTES.abort;
    await this.call(baseUrl, route, route.path({ token }), { reqId, timeoutMs: 5_000 });
  }

  async deleteFile(
    baseUrl: string,
    fileId: string,
    deletedAt: string,
    reqId?: string,
    force = false,
  ): Promise<{ wasLive: boolean; known: boolean }> {
    const route = INTERNAL_ROUTES.delete;
    return this.call(baseUrl, route, route.path({ id: fileId }), {
      body: { deletedAt, force },
      reqId,
      timeoutMs: 10_000,
    });
  }

  async catchUp(baseUrl: string, since: string, limit: number): Promise<CatchUpAnswer> {
    const route = INTERNAL_ROUTES.catchUp;
    return this.call(baseUrl, route, route.path({ since, limit }), { timeoutMs: 5_000 });
  }

  /** The peer's anti-entropy digests for the partitions set in `bitmap` (non-empty ones only). */
  async digests(baseUrl: string, bitmap: Buffer): Promise<Record<string, string>> {
    const route = INTERNAL_ROUTES.digests;
    const answer = await this.call(baseUrl, route, route.path(), {
      body: { partitions: bitmap.toString('base64') },
      timeoutMs: 10_000,
    });
    return answer.digests;
  }

  async partitionRecords(baseUrl: string, partition: number): Promise<FileRecord[]> {
    const route = INTERNAL_ROUTES.partitionRecords;
    return this.call(baseUrl, route, route.path({ p: partition }), { timeoutMs: 30_000 });
  }

  /** Asks the peer to fetch a copy from one of `sources` and store it (repair, rebalance). */
  async pullCopy(
    baseUrl: string,
    meta: FileMeta,
    sources: string[],
    heldFor: string | null = null,
  ): Promise<{ result: string; bytes: number }> {
    const route = INTERNAL_ROUTES.pull;
    // The peer answers once the whole copy is stored: no fixed header timeout can fit every size.
    // Wait for three times as long as the copy takes at the repair rate, plus a margin, so that a
    // big copy is never given up on (and its slot reused) while the peer is still pulling it.
    const rate = this.options.transferBytesPerSec ?? 100 * 1024 * 1024;
    const headersTimeoutMs = PULL_MARGIN_MS + Math.ceil((3 * meta.size * 1000) / rate);
    return this.call(baseUrl, route, route.path({ id: meta.id }), {
      body: { meta, sources, heldFor },
      headersTimeoutMs,
    });
  }

  /** Hands the peer small copies with their bytes, to check and store (repair, rebalance). */
  async storeCopies(baseUrl: string, copies: StoreCopiesRequest['copies']): Promise<CopyResult[]> {
    const route = INTERNAL_ROUTES.storeCopies;
    const answer = await this.call(baseUrl, route, route.path(), { body: { copies }, timeoutMs: 30_000 });
    if (answer.results.length !== copies.length || answer.results.some((r, i) => r.id !== copies[i]!.meta.id))
      throw this.malformed(baseUrl, route, 200, 'results that are not one per copy, in order');
    return answer.results;
  }

  /** The peer's small copies of `ids` that it keeps inline (some, all or none, each at most once). */
  async readCopies(baseUrl: string, ids: string[]): Promise<Array<{ id: string; data: Buffer }>> {
    const route = INTERNAL_ROUTES.readCopies;
    const answer = await this.call(baseUrl, route, route.path(), { body: { ids }, timeoutMs: 30_000 });
    const asked = new Set(ids);
    if (answer.copies.some((c) => !asked.delete(c.id)))
      throw this.malformed(baseUrl, route, 200, 'a copy that was not asked for, or one twice');
    return answer.copies.map((c) => ({ id: c.id, data: Buffer.from(c.data, 'base64') }));
  }

  /** The peer's registry digest, and its every entry when `digest` (this node's) is not the same. */
  async registrySync(
    baseUrl: string,
    digest: string,
  ): Promise<{ digest: string; entries?: RegistryEntry[] }> {
    const route = INTERNAL_ROUTES.registrySync;
    return this.call(baseUrl, route, route.path(), { body: { digest }, timeoutMs: 10_000 });
  }

  /** Hands the peer registry entries to take where they are newer than its own. */
  async registryMerge(baseUrl: string, entries: RegistryEntry[], timeoutMs = 10_000): Promise<number> {
    const route = INTERNAL_ROUTES.registryMerge;
    const answer = await this.call(baseUrl, route, route.path(), { body: { entries }, timeoutMs });
    return answer.merged;
  }

  /** Asks the peer to drop its surplus copy (or a tombstone past its grace). */
  async forget(baseUrl: string, fileId: string, sha256: string | null): Promise<boolean> {
    const route = INTERNAL_ROUTES.forget;
    const answer = await this.call(baseUrl, route, route.path({ id: fileId }), {
      body: { sha256 },
      timeoutMs: 10_000,
    });
    return answer.forgotten;
  }

  async record(
    baseUrl: string,
    fileId: string,
    timeoutMs: number,
    reqId?: string,
  ): Promise<FileRecord | undefined> {
    const route = INTERNAL_ROUTES.record;
    let record: FileRecord;
    try {
      record = await this.call(baseUrl, route, route.path({ id: fileId }), { timeoutMs, reqId });
    } catch (err) {
      if (err instanceof PeerError && err.status === 404) return undefined;
      throw err;
    }
    if (record.id !== fileId) throw this.malformed(baseUrl, route, 200, 'a record of another file');
    return record;
  }

  async objectVersions(
    baseUrl: string,
    bucket: string,
    key: string,
    upload: string | undefined,
    timeoutMs: number,
    reqId?: string,
  ): Promise<FileRecord[]> {
    const route = INTERNAL_ROUTES.objectVersions;
    const body = { bucket, key, ...(upload === undefined ? {} : { upload }) };
    const answer = await this.call(baseUrl, route, route.path(), { body, timeoutMs, reqId });
    if (answer.versions.some((v) => foreignVersion(v, bucket, key, upload)))
      throw this.malformed(baseUrl, route, 200, 'a file that is not one of the key (or upload) asked for');
    return answer.versions;
  }

  /** Several keys' versions in one request: each the key's versions, or the error it failed with. */
  async objectLookupBatch(
    baseUrl: string,
    lookups: ObjectLookupBatchRequest['lookups'],
    timeoutMs: number,
    reqId?: string,
  ): Promise<Array<FileRecord[] | PeerError>> {
    const route = INTERNAL_ROUTES.objectLookupBatch;
    const answer = await this.call(baseUrl, route, route.path(), { body: { lookups }, timeoutMs, reqId });
    return this.oneEach(baseUrl, route, answer.results, lookups.length).map((r, i) => {
      if (!('versions' in r)) return this.refused(baseUrl, 'lookup', r.error);
      const { bucket, key } = lookups[i]!;
      if (r.versions.some((v) => foreignVersion(v, bucket, key, undefined)))
        throw this.malformed(baseUrl, route, 200, 'a file that is not one of the key asked for');
      return r.versions;
    });
  }

  async listUploads(
    baseUrl: string,
    bucket: string,
    after: { key: string; upload: string },
    limit: number,
    reqId?: string,
  ): Promise<UploadListing> {
    const route = INTERNAL_ROUTES.uploadListing;
    const body = { bucket, afterKey: after.key, afterUpload: after.upload, limit };
    return this.call(baseUrl, route, route.path(), { body, timeoutMs: 10_000, reqId });
  }

  async listObjects(baseUrl: string, request: ListRequest, reqId?: string): Promise<ObjectListing> {
    const route = INTERNAL_ROUTES.objectListing;
    const body = {
      bucket: request.bucket,
      prefix: request.prefix,
      limit: request.limit,
      ...(request.delimiter === undefined ? {} : { delimiter: request.delimiter }),
      ...(request.after === undefined ? {} : { after: request.after }),
    };
    return this.call(baseUrl, route, route.path(), { body, timeoutMs: 10_000, reqId });
  }

  async listRecords(baseUrl: string, after: string, limit: number, reqId?: string): Promise<LocalListing> {
    const route = INTERNAL_ROUTES.listing;
    return this.call(baseUrl, route, route.path({ after, limit }), { timeoutMs: 10_000, reqId });
  }

  /**
   * Opens a peer's copy for reading. `range` and `ifNoneMatch` are passed through as HTTP
   * headers so the peer answers 200, 206, 304 or 416 exactly as a public GET would.
   * Returns undefined when the peer has no live copy (404 not_found); throws PeerError when the
   * peer knows the file was deleted (code "not_found" with status 410) or cannot be reached, and
   * a 'protocol' PeerError when the x-shoal-meta header is missing or is not this file's live
   * record. The caller owns the body: it must read it to the end or discard() it.
   */
  async openBlob(
    baseUrl: string,
    fileId: string,
    opts: { method: 'GET' | 'HEAD'; range?: string; ifNoneMatch?: string; reqId?: string; framed?: boolean },
  ): Promise<BlobResponse | undefined> {
    const route = INTERNAL_ROUTES.blob;
    const path = route.path({ id: fileId });
    const headers: Record<string, string> = this.headers(opts.method, path, opts.reqId);
    if (opts.range) headers.range = opts.range;
    if (opts.ifNoneMatch) headers['if-none-match'] = opts.ifNoneMatch;
    if (opts.framed) headers[HEADER_FRAMED] = '1';
    // A peer that accepts the connection and then hangs must not hold a read up for long:
    // the caller moves on to the next copy.
    const res = await this.send(baseUrl, path, { method: opts.method, headers, headersTimeoutMs: 5_000 });
    if (res.statusCode === 404) {
      await res.body.dump();
      return undefined;
    }
    if (res.statusCode === 410) {
      await res.body.dump();
      throw new PeerError(baseUrl, 'status', 'peer holds a tombstone', 410, 'deleted');
    }
    if (![200, 206, 304, 416].includes(res.statusCode)) {
      const text = await res.body.text().catch(() => '');
      throw new PeerError(
        baseUrl,
        'status',
        `peer answered ${res.statusCode}: ${text.slice(0, 200)}`,
        res.statusCode,
      );
    }
    const record = decodeMetaHeader(res.headers[HEADER_META]);
    if (!record || record.id !== fileId || record.state !== 'live') {
      // The body may be a whole file: dump() reads a little of it at most, then lets go.
      await res.body.dump().catch(() => undefined);
      throw this.malformed(baseUrl, route, res.statusCode, `a missing or invalid ${HEADER_META} header`);
    }
    // The caller may let go of this body before its end (a client hung up), and undici reports
    // destroying an unfinished body as an error. Readers still get every error through their own
    // pipeline or listeners; this one keeps an error nobody else hears from ending the process.
    res.body.on('error', () => undefined);
    return { status: res.statusCode, record, headers: res.headers, body: res.body };
  }

  async close(): Promise<void> {
    await Promise.all([this.agent.close(), this.control.close()]).catch(() => undefined);
  }

  private headers(
    method: string,
    path: string,
    reqId?: string,
    body?: string | typeof STREAMED_BODY,
  ): Record<string, string> {
    const { nodeId } = this.options;
    const secret =
      typeof this.options.secret === 'object' ? this.options.secret.signing : this.options.secret;
    const headers: Record<string, string> = { [HEADER_NODE]: nodeId };
    if (secret) headers[HEADER_AUTH] = signRequest(secret, { method, path, nodeId, body });
    if (reqId) headers[HEADER_REQUEST_ID] = reqId;
    return headers;
  }

  private async send(
    baseUrl: string,
    path: string,
    opts: {
      method: Dispatcher.HttpMethod;
      headers: Record<string, string>;
      body?: string | Readable | Buffer;
      timeoutMs?: number;
      headersTimeoutMs?: number;
      signal?: AbortSignal;
      control?: boolean;
    },
  ): Promise<Dispatcher.ResponseData> {
    try {
      return await request(baseUrl + path, {
        dispatcher: opts.control ? this.control : this.agent,
        method: opts.method,
        headers: opts.headers,
        body: opts.body,
        signal: combineSignals(opts.signal, opts.timeoutMs ? AbortSignal.timeout(opts.timeoutMs) : undefined),
        ...(opts.headersTimeoutMs ? { headersTimeout: opts.headersTimeoutMs } : {}),
      });
    } catch (err) {
      throw toPeerError(baseUrl, err);
    }
  }

  /**
   * One JSON call: sends `body` (JSON) or `stream` (bytes), reads the whole answer, and returns it
   * once it has passed the route's answer schema. An error status becomes a 'status' PeerError
   * carrying the peer's error code; an answer the schema refuses, a 'protocol' one.
   */
  private async call<S extends RouteSpec>(
    baseUrl: string,
    route: InternalRoute<S>,
    path: string,
    opts: {
      body?: RouteBody<S>;
      /** Bytes, streamed or whole (a Buffer goes with its Content-Length). */
      stream?: Readable | Buffer;
      timeoutMs?: number;
      headersTimeoutMs?: number;
      reqId?: string;
      signal?: AbortSignal;
    },
  ): Promise<CheckedAnswer<S>> {
    const json = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const headers = this.headers(route.method, path, opts.reqId, opts.stream ? STREAMED_BODY : json);
    let body: string | Readable | Buffer | undefined = opts.stream;
    if (json !== undefined) {
      headers['content-type'] = 'application/json';
      body = json;
    } else if (opts.stream) {
      headers['content-type'] = 'application/octet-stream';
    }
    const res = await this.send(baseUrl, path, {
      method: route.method,
      headers,
      body,
      timeoutMs: opts.timeoutMs,
      headersTimeoutMs: opts.headersTimeoutMs,
      signal: opts.signal,
      control: CONTROL_ROUTES.has(route.name),
    });
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      throw toPeerError(baseUrl, err);
    }
    if (res.statusCode >= 400) throw refusal(baseUrl, res.statusCode, text);
    let value: unknown;
    try {
      value = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      throw this.malformed(baseUrl, route, res.statusCode, 'a body that is not JSON');
    }
    const checked = check(route.answer, value);
    if (!checked.ok) throw this.malformed(baseUrl, route, res.statusCode, checked.reason);
    return checked.value;
  }

  /** A batch's answers, one per item sent, in order; anything else is a malformed answer. */
  private oneEach<R>(baseUrl: string, route: { name: string }, results: R[], sent: number): R[] {
    if (results.length !== sent)
      throw this.malformed(baseUrl, route, 200, `${results.length} results for ${sent} items`);
    return results;
  }

  /** One item of a batch that the peer refused on its own, the rest of the batch answered. */
  private refused(baseUrl: string, what: string, error: ErrorBody['error']): PeerError {
    const message = `peer refused the ${what}: ${error.message.slice(0, 300)}`;
    return new PeerError(baseUrl, 'status', message, statusOfCode(error.code), error.code);
  }

  private malformed(baseUrl: string, route: { name: string }, status: number, what: string): PeerError {
    return new PeerError(
      baseUrl,
      'protocol',
      `peer answered ${route.name} with ${status} and ${what}`,
      status,
    );
  }
}

/** The routes membership calls: each peer gets its own small pool of connections for them. */
const CONTROL_ROUTES: ReadonlySet<string> = new Set([
  'gossip',
  'probe',
  'ping',
  'registrySync',
  'registryMerge',
]);

/** Whether a record a peer answered for a key (or an upload) is not one of its live files. */
function foreignVersion(v: FileRecord, bucket: string, key: string, upload: string | undefined): boolean {
  return (
    v.state !== 'live' || v.object?.bucket !== bucket || v.object.key !== key || v.object.upload !== upload
  );
}

/** A peer's error answer: its code and message when the body is the protocol's error body. */
function refusal(baseUrl: string, status: number, text: string): PeerError {
  let code: string | undefined;
  let message = text.slice(0, 300);
  try {
    const parsed = ErrorBodySchema.safeParse(JSON.parse(text));
    if (parsed.success) {
      code = parsed.data.error.code;
      message = parsed.data.error.message.slice(0, 300);
    }
  } catch {
    // not JSON: keep the raw text
  }
  return new PeerError(baseUrl, 'status', `peer answered ${status}: ${message}`, status, code);
}

function combineSignals(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const present = signals.filter((s): s is AbortSignal => s !== undefined);
  if (present.length <= 1) return present[0];
  return AbortSignal.any(present);
}

function toPeerError(peer: string, err: unknown): PeerError {
  if (err instanceof PeerError) return err;
  const e = err as Error & { code?: string };
  const timedOut =
    e?.name === 'TimeoutError' ||
    e instanceof undiciErrors.HeadersTimeoutError ||
    e instanceof undiciErrors.BodyTimeoutError ||
    e instanceof undiciErrors.ConnectTimeoutError;
  return new PeerError(
    peer,
    timedOut ? 'timeout' : 'unreachable',
    `${peer}: ${e?.message ?? String(err)}`,
    undefined,
    e?.code,
    {
      cause: err,
    },
  );
}
