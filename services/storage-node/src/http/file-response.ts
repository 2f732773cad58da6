import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream';
import { errorBody } from '../../../../shared/errors';
import { contentDisposition } from '../../../../shared/http-range';
import type { FileRecord } from '../../../../shared/protocol';
import { discard } from '../../../../shared/streams';
import type { ReadDecision } from '../files/download';
import { endsBlock, written } from '../store/block-pool';
import { HeldBytes } from '../store/verified-read';

/** Writes the status and headers a GET or HEAD of a file answers with, for a decided read. */
export function writeFileHeaders(res: ServerResponse, record: FileRecord, decision: ReadDecision): void {
  res.statusCode = decision.status;
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
  res: ServerResponse,
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
    sendJson(
      res,
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
  await sendBody(res, body, onBytes);
}

/**
 * Sends a read's body after its headers, with backpressure; the body is released however the
 * response ends. A client that goes away, or a read that fails past its first byte (every copy
 * failed mid-way), cuts the connection: the status has gone out already.
 */
export async function sendBody(
  res: ServerResponse,
  body: Readable,
  onBytes?: (n: number) => void,
): Promise<void> {
  if (body instanceof HeldBytes) {
    // A small verified copy in memory: one write, no pipeline to set up and tear down.
    onBytes?.(body.bytes.length);
    res.end(body.bytes);
    return;
  }
  if (onBytes) body.on('data', (chunk: Buffer) => onBytes(chunk.length));
  try {
    await pump(body, res);
  } catch {
    res.destroy();
  }
}

/**
 * Sends `body` into `res` with backpressure, as pipeline() would, and hands a pooled block back
 * to the block pool once the write of its last piece has completed (store/block-pool.ts).
 * Resolves when the response has finished; rejects, with the body released, when the body fails
 * or the client goes away first.
 */
function pump(body: Readable, res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      const more = endsBlock(chunk)
        ? res.write(chunk, (err) => {
            if (!err) written(chunk);
          })
        : res.write(chunk);
      if (!more) body.pause();
    };
    const onDrain = (): void => {
      body.resume();
    };
    let settled = false;
    const settle = (err?: Error | null): void => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      res.off('drain', onDrain);
      stopBody();
      stopResponse();
      // A response finished by someone else before the body ended must not keep its file open.
      if (err || !body.readableEnded) discard(body);
      if (err) reject(err);
      else resolve();
    };
    const stopBody = finished(body, (err) => {
      if (err) settle(err);
      else res.end();
    });
    const stopResponse = finished(res, (err) => settle(err));
    res.on('drain', onDrain);
    body.on('data', onData);
  });
}

/** Ends `res` with `body` as JSON, at the status already set, as express's res.json() would. */
export function sendJson(res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', String(Buffer.byteLength(text)));
  res.end(text);
}
