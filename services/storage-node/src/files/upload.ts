import type { Request } from 'express';
import type { StorageEngine } from 'multer';
import type { Readable } from 'node:stream';
import { newFileId } from '../../../../shared/ids';
import type { FileMeta } from '../../../../shared/protocol';
import type { PreparedWrite, QuorumWriter } from '../replication/quorum-write';

/** What the storage engine hands to the route once the multipart body has been read whole. */
export interface PreparedFile {
  meta: FileMeta;
  write: PreparedWrite;
}

export const MAX_NAME_LENGTH = 1024;

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
    this.writer.prepare(fileId, stream, reqId).then(
      (write) => {
        const meta: FileMeta = {
          id: fileId,
          name: (file.originalname || 'file').slice(0, MAX_NAME_LENGTH),
          size: write.size,
          sha256: write.sha256,
          contentType: file.mimetype || 'application/octet-stream',
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
    this.writer.abort(prepared.write, this.requestId(req)).then(
      () => callback(null),
      () => callback(null),
    );
  }
}
