import type { Response } from 'express';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { errorBody } from '../../../../shared/errors';
import { contentDisposition } from '../../../../shared/http-range';
import type { FileRecord } from '../../../../shared/protocol';
import { discard } from '../../../../shared/streams';
import type { ReadDecision } from '../files/download';
import { HeldBytes } from '../store/verified-read';

/** Writes the status and headers a GET or HEAD of a file answers with, for a decided read. */
export function writeFileHeaders(res: Response, record: FileRecord, decision: ReadDecision): void {
  res.status(decision.status);
  res.setHeader('ETag', `"${record.sha256}"`);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Last-Modified', new Date(record.createdAt).toUTCString());
  res.setHeader('Cache-Control', 'private, max-age=0, must-revalidate');
  if (decision.status === 304) return;
  if (decision.status === 416) {
    res.setHeader('Content-Range', `bytes */${record.size}`);
    return;
  }
  res.setHeader('Content-Type', record.contentType);
  res.setHeader('Content-Disposition', contentDisposition(record.name));
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Length', String(decision.end - decision.start + 1));
  if (decision.status === 206)
    res.setHeader('Content-Range', `bytes ${decision.start}-${decision.end}/${record.size}`);
}

/**
 * Sends a decided read: headers, then the body (if any) with backpressure. The body is this
 * function's from the start: piped to the client or released, however the request ends.
 */
export async function sendFile(
  res: Response,
  record: FileRecord,
  decision: ReadDecision,
  body: Readable | undefined,
  onBytes?: (n: number) => void,
  /** Bytes the body really has, when it is not the decided range as is (framed blocks). */
  bodyLength?: number,
): Promise<void> {
  try {
    writeFileHeaders(res, record, decision);
    if (bodyLength !== undefined && body) res.setHeader('Content-Length', String(bodyLength));
  } catch (err) {
    discard(body);
    throw err;
  }
  if (decision.status === 416) {
    res.json(
      errorBody(
        'range_not_satisfiable',
        `the file has ${record.size} bytes; the requested range lies outside it`,
      ),
    );
    return;
  }
  if (!body) {
    res.end();
    return;
  }
  if (body instanceof HeldBytes) {
    // A small verified copy in memory: one write, no pipeline to set up and tear down.
    onBytes?.(body.bytes.length);
    res.end(body.bytes);
    return;
  }
  if (onBytes) body.on('data', (chunk: Buffer) => onBytes(chunk.length));
  try {
    await pipeline(body, res);
  } catch {
    // The client went away or every copy failed mid-way: the connection is already cut.
    res.destroy();
  }
}
