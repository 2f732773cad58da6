import type { Request } from 'express';
import type { StorageEngine } from 'multer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { ShoalError } from '../../../../shared/errors';
import { newFileId } from '../../../../shared/ids';
import { isContentType, MAX_CONTENT_TYPE_LENGTH, type FileMeta } from '../../../../shared/protocol';
import type { PreparedWrite, QuorumWriter } from '../replication/quorum-write';

/** What the storage engine hands to the route once the multipart body has been read whole. */
export interface PreparedFile {
  meta: FileMeta;
  write: PreparedWrite;
}

export const MAX_NAME_LENGTH = 1024;

/**
 * Limits on an upload's multipart body besides --max-file-size, for multer (which hands them to
 * busboy). Shoal keeps one file part and ignores every other field, so the rest gets a small
 * budget: busboy holds each field value whole in memory, so one request can make it buffer at
 * most fields x fieldSize = 256 KiB. Going over any of them gets 413 `multipart_limit`.
 */
export const MULTIPART_LIMITS = {
  /** File parts: the one named "file" (a second one gets 400). */
  files: 1,
  /** Non-file fields; tolerated because forms often carry a few, then dropped. */
  fields: 16,
  /** Bytes of one field value. */
  fieldSize: 16 * 1024,
  /** Characters of a part's name (multer counts characters). */
  fieldNameSize: 256,
  /** Parts of any kind, the file part and parts busboy skips (no Content-Disposition) included. */
  parts: 20,
} as const;

/**
 * The header block of one part is capped by busboy itself (its MAX_HEADER_SIZE, not settable);
 * over it, busboy reports a malformed part header and the upload gets 400 `malformed_part_header`.
 * busboy 1.x has no per-part limit on header pairs: it ignores multer's `headerPairs` option
 * (only busboy 0.x read it), keeps the first 2000 pairs and drops the rest, so the byte cap is
 * what bounds a part's headers, which is why `headerPairs` is not set above.
 */
export const PART_HEADER_MAX_BYTES = 16 * 1024;

/** How long the rest of a refused request's body is still read (and thrown away) before the connection is cut. */
const DRAIN_GRACE_MS = 2_000;

/**
 * For an answer sent while the request body is still arriving (a refused upload, a 401 before an
 * upload): Node reads the rest of the body and throws it away, so that a client still sending can
 * read the answer and reuse the connection; this caps that at DRAIN_GRACE_MS, then cuts the
 * connection, so a refused client cannot make the node read gigabytes.
 */
export function capDrain(req: IncomingMessage, res: ServerResponse): void {
  if (req.complete) return;
  res.once('finish', () => {
    setTimeout(() => {
      if (!req.complete) req.destroy();
    }, DRAIN_GRACE_MS).unref();
  });
}

/**
 * multer's `streamHandler`: feeds the body to busboy. When multer gives up on a body (a limit, a
 * malformed part, a second file: it unpipes busboy) while the client is still sending, multer
 * would read the rest before it reports the error, however large. A 'close' on the request is one
 * of the events multer waits for, so it reports at once, the error handler answers, and
 * capDrain bounds what is read after it.
 */
export function feedBusboy(req: Request, busboy: NodeJS.WritableStream): void {
  busboy.once('unpipe', () => {
    if (!req.complete && !heldBack.has(req)) setImmediate(() => req.emit('close'));
  });
  req.pipe(busboy);
}

/** Requests refused while they had prepared copies: their body is not read while those are aborted. */
const heldBack = new WeakSet<Request>();

/**
 * Stops reading a refused request's body (multer would keep busboy parsing it, gigabytes if the
 * client keeps sending, while the prepared copies are aborted on the replicas): TCP then holds
 * the client back. Returns what to call once the aborts are done, after multer's callback, for
 * multer to answer at once (its 'close' wait, as in feedBusboy).
 */
function holdBack(req: Request): () => void {
  if (req.complete || req.destroyed || heldBack.has(req)) return () => undefined;
  heldBack.add(req);
  req.unpipe();
  req.pause();
  return () => setImmediate(() => req.emit('close'));
}

/**
 * A multer storage engine that never stores anything itself: it streams the file part straight
 * to the replicas (prepare phase). The route commits once multer has read the whole request
 * without error; if multer fails later (say, a second file part), `_removeFile` aborts the
 * prepared copies, so a rejected request leaves nothing behind.
 */
export class ReplicatingStorage implements StorageEngine {
  constructor(
    private readonly writer: QuorumWriter,
    private readonly requestId: (req: Request) => string,
  ) {}

  _handleFile(
    req: Request,
    file: Express.Multer.File,
    callback: (error?: unknown, info?: Partial<Express.Multer.File> & { prepared?: PreparedFile }) => void,
  ): void {
    const fileId = newFileId();
    const reqId = this.requestId(req);
    const stream = (file as unknown as { stream: Readable }).stream;
    if (Buffer.byteLength(file.originalname ?? '') > MAX_NAME_LENGTH) {
      stream.resume();
      callback(new ShoalError('bad_request', `file names are limited to ${MAX_NAME_LENGTH} bytes`));
      return;
    }
    const contentType = file.mimetype || 'application/octet-stream';
    // busboy hands over type/subtype tokens of any length; replicas take at most what the protocol allows.
    if (!isContentType(contentType)) {
      stream.resume();
      callback(
        new ShoalError('bad_request', `content types are limited to ${MAX_CONTENT_TYPE_LENGTH} characters`),
      );
      return;
    }
    this.writer.prepare(fileId, stream, reqId).then(
      (write) => {
        const meta: FileMeta = {
          id: fileId,
          name: file.originalname || 'file',
          size: write.size,
          sha256: write.sha256,
          contentType,
          createdAt: new Date().toISOString(),
        };
        callback(null, { size: write.size, prepared: { meta, write } });
      },
      (err: unknown) => {
        // Multer waits for the part to be consumed; make sure a failed write does not stall it.
        stream.resume();
        callback(err);
      },
    );
  }

  _removeFile(
    req: Request,
    file: Express.Multer.File & { prepared?: PreparedFile },
    callback: (error: Error | null) => void,
  ): void {
    const prepared = file.prepared;
    if (!prepared) return callback(null);
    const release = holdBack(req);
    const done = (): void => {
      callback(null);
      release();
    };
    this.writer.abort(prepared.write, this.requestId(req)).then(done, done);
  }
}
