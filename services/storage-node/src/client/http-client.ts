import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { CliError, EXIT, exitCodeForStatus, networkError, usageError } from './errors';
import { multipartFileBody, type FilePart } from './multipart';

/**
 * A client for the public HTTP interface of any Shoal node, exactly as the contract describes it.
 * It knows nothing of the server's code: every shape here is the contract's.
 */

export interface StoredFile {
  id: string;
  name: string;
  size: number;
  sha256: string;
  contentType: string;
  createdAt: string;
  replicas: string[];
}

export interface DrainStatus {
  node: string;
  draining: boolean;
  /** Copies the node still holds; the drain is done when this is 0. */
  files: number;
  done: boolean;
}

export interface FilePage {
  files: StoredFile[];
  next: string | null;
}

export interface CopyState {
  nodeId: string;
  url: string;
  state: string;
}

export interface FileInfo extends Omit<StoredFile, 'replicas'> {
  replicas: CopyState[];
}

/** A member as `GET /cluster` lists it; the figures are there for nodes that answered in time. */
export interface ClusterMember {
  id: string;
  url: string;
  state: string;
  files?: number;
  bytes?: number;
  diskFreeBytes?: number | null;
  diskTotalBytes?: number | null;
  underReplicatedFiles?: number;
  pendingRepairBytes?: number;
}

export interface ClusterView {
  self: string;
  replicas: number;
  writeQuorum: number;
  underReplicatedFiles?: number;
  pendingRepairBytes?: number;
  nodes: ClusterMember[];
}

export interface Download {
  headers: IncomingHttpHeaders;
  body: Readable;
}

/** Requests without a body of their own answer quickly; a node that says nothing for this long is gone. */
const ANSWER_TIMEOUT_MS = 60_000;
/**
 * An upload is answered once W replicas have fsync'd and verified the last byte. undici starts
 * counting this only once the body is sent, so it bounds the commit, not the transfer.
 */
const UPLOAD_ANSWER_TIMEOUT_MS = 300_000;
/** Bytes of an error answer worth reading; the rest is dropped. */
const ERROR_BODY_LIMIT = 64 * 1024;

/**
 * Stops reading a body that is no longer wanted. The connection is closed rather than drained
 * (the body may be gigabytes); the abort it causes is expected, not an error to report.
 */
export function discard(body: Readable): void {
  if (body.destroyed) return;
  body.on('error', () => undefined);
  body.destroy();
}

export interface BaseUrl {
  origin: string;
  /** Path prefix without a trailing slash: empty for a node at the root. */
  prefix: string;
}

/**
 * Parses `--to`: an http(s) base URL, possibly with a path prefix (a node behind a proxy). A bare
 * `host:port` means http. Credentials in the URL are refused: they would end up in messages.
 */
export function parseBaseUrl(raw: string): BaseUrl {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usageError(`--to is not a URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usageError('--to must be an http(s) URL');
  if (url.username || url.password) throw usageError('--to must not carry credentials; use --api-key');
  if (url.search || url.hash) throw usageError('--to must not carry a query or fragment');
  return { origin: url.origin, prefix: url.pathname.replace(/\/+$/, '') };
}

export interface S3KeyInfo {
  accessKeyId: string;
  name: string;
  createdAt: string;
}

export interface S3KeyCreated extends S3KeyInfo {
  secretAccessKey: string;
}

export interface BucketGrant {
  bucket: string;
  accessKeyId: string;
  read: boolean;
  write: boolean;
}

export class ShoalClient {
  private readonly agent = new Agent({ connectTimeout: 10_000, keepAliveTimeout: 4_000 });
  /** The node's URL as it may be shown: never with a key in it. */
  readonly where: string;

  constructor(
    private readonly base: BaseUrl,
    private readonly apiKey: string | undefined,
    private readonly signal: AbortSignal,
  ) {
    this.where = base.origin + base.prefix;
  }

  /** Streams one file from disk as `POST /files`; `onChunk` sees each file byte as it is sent. */
  async upload(part: FilePart, onChunk: (chunk: Buffer) => void): Promise<StoredFile> {
    const multipart = multipartFileBody(part, onChunk);
    const res = await this.send('POST', '/files', {
      body: multipart.body,
      headers: { 'content-type': multipart.contentType, 'content-length': String(multipart.length) },
      headersTimeout: UPLOAD_ANSWER_TIMEOUT_MS,
    });
    if (res.statusCode !== 201) throw await this.failure(res);
    return (await res.body.json()) as StoredFile;
  }

  /** `GET /files/<id>` with the body left to stream; the caller must consume or destroy it. */
  async download(id: string): Promise<Download> {
    const res = await this.send('GET', `/files/${encodeURIComponent(id)}`, {
      headers: { 'accept-encoding': 'identity' },
    });
    if (res.statusCode !== 200) throw await this.failure(res);
    return { headers: res.headers, body: res.body };
  }

  async list(after: string | null, limit: number): Promise<FilePage> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (after !== null) query.set('after', after);
    const page = await this.getJson<FilePage>(`/files?${query.toString()}`);
    if (!Array.isArray(page.files))
      throw new CliError(`${this.where} sent a listing without files`, EXIT.error);
    return page;
  }

  info(id: string): Promise<FileInfo> {
    return this.getJson<FileInfo>(`/files/${encodeURIComponent(id)}/info`);
  }

  async remove(id: string): Promise<void> {
    const res = await this.send('DELETE', `/files/${encodeURIComponent(id)}`, {});
    if (res.statusCode !== 204 && res.statusCode !== 200) throw await this.failure(res);
    await res.body.dump();
  }

  async cluster(): Promise<ClusterView> {
    const view = await this.getJson<ClusterView>('/cluster');
    if (!Array.isArray(view.nodes)) throw new CliError(`${this.where} sent no member list`, EXIT.error);
    return view;
  }

  /** Starts (`POST`), reads (`GET`) or cancels (`DELETE`) the drain of the node asked. */
  async drain(method: 'POST' | 'GET' | 'DELETE'): Promise<DrainStatus> {
    const res = await this.send(method, '/admin/drain', {});
    if (res.statusCode !== 200 && res.statusCode !== 202) throw await this.failure(res);
    return (await res.body.json()) as DrainStatus;
  }

  async createS3Key(name: string): Promise<S3KeyCreated> {
    const res = await this.send('POST', '/admin/s3/keys', {
      body: JSON.stringify({ name }),
      headers: { 'content-type': 'application/json' },
    });
    if (res.statusCode !== 201) throw await this.failure(res);
    return (await res.body.json()) as S3KeyCreated;
  }

  async listS3Keys(): Promise<S3KeyInfo[]> {
    return (await this.getJson<{ keys: S3KeyInfo[] }>('/admin/s3/keys')).keys;
  }

  async removeS3Key(accessKeyId: string): Promise<void> {
    const res = await this.send('DELETE', `/admin/s3/keys/${encodeURIComponent(accessKeyId)}`, {});
    if (res.statusCode !== 204) throw await this.failure(res);
    discard(res.body);
  }

  async allowBucket(
    bucket: string,
    grant: { accessKeyId: string; read: boolean; write: boolean },
  ): Promise<BucketGrant> {
    const res = await this.send('POST', `/admin/s3/buckets/${encodeURIComponent(bucket)}/grants`, {
      body: JSON.stringify(grant),
      headers: { 'content-type': 'application/json' },
    });
    if (res.statusCode !== 200) throw await this.failure(res);
    return (await res.body.json()) as BucketGrant;
  }

  /** Drops every pooled connection so the process can exit at once. */
  async close(): Promise<void> {
    await this.agent.destroy();
  }

  private async getJson<T>(path: string): Promise<T> {
    const res = await this.send('GET', path, {});
    if (res.statusCode !== 200) throw await this.failure(res);
    try {
      return (await res.body.json()) as T;
    } catch (err) {
      throw new CliError(`${this.where} sent an answer that is not JSON`, EXIT.error, { cause: err });
    }
  }

  private async send(
    method: Dispatcher.HttpMethod,
    path: string,
    options: {
      body?: Readable | string;
      headers?: Record<string, string>;
      headersTimeout?: number;
    },
  ): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = { ...options.headers };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    try {
      return await this.agent.request({
        origin: this.base.origin,
        path: this.base.prefix + path,
        method,
        headers,
        body: options.body,
        signal: this.signal,
        headersTimeout: options.headersTimeout ?? ANSWER_TIMEOUT_MS,
      });
    } catch (err) {
      throw networkError(err, this.where);
    }
  }

  /** The error a non-success answer stands for, with the server's own message when it sent one. */
  private async failure(res: Dispatcher.ResponseData): Promise<CliError> {
    const code = exitCodeForStatus(res.statusCode);
    let text = '';
    try {
      for await (const chunk of res.body) {
        text += (chunk as Buffer).toString('utf8');
        if (text.length > ERROR_BODY_LIMIT) break;
      }
    } catch {
      // The message is a courtesy; the status alone decides the exit code.
    } finally {
      discard(res.body);
    }
    let message: string | undefined;
    try {
      const parsed = JSON.parse(text) as { error?: { message?: unknown } };
      if (typeof parsed.error?.message === 'string') message = parsed.error.message;
    } catch {
      // Not the contract's JSON error (a proxy in between, perhaps): fall back to the status.
    }
    return new CliError(message ?? `${this.where} answered HTTP ${res.statusCode}`, code);
  }
}
