import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { contentDisposition } from '../../../../shared/http-range';
import { CliError, EXIT } from './errors';

/** A file on disk to send as the one `file` part of a multipart/form-data body. */
export interface FilePart {
  path: string;
  /** The name the server stores (the file's base name). */
  name: string;
  /** Its size when it was checked; the body declares exactly this many bytes. */
  size: number;
  contentType: string;
}

export interface MultipartBody {
  body: Readable;
  contentType: string;
  /** Exact byte length of the whole body, so the request carries a Content-Length. */
  length: number;
}

/**
 * The Content-Disposition of the part, made like a download's: `filename*` (RFC 8187) carries the
 * exact name whenever the plain `filename` cannot, and busboy on the node prefers it.
 */
function partDisposition(name: string): string {
  return `${contentDisposition(name, 'form-data')}; name="file"`;
}

/**
 * Builds a body that streams the file from disk between the part's head and the closing
 * boundary; nothing but one read buffer is held in memory. `onChunk` sees every file byte as it
 * is handed to the socket (for hashing and progress). A file that grows or shrinks while it is
 * sent fails the body rather than sending something other than what Content-Length promised.
 */
export function multipartFileBody(part: FilePart, onChunk: (chunk: Buffer) => void): MultipartBody {
  const boundary = '----shoal-' + randomBytes(12).toString('hex');
  const head = Buffer.from(
    `--${boundary}\r\n` +
      `Content-Disposition: ${partDisposition(part.name)}\r\n` +
      `Content-Type: ${part.contentType}\r\n\r\n`,
    'utf8',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8');

  async function* chunks(): AsyncGenerator<Buffer> {
    yield head;
    let sent = 0;
    if (part.size > 0) {
      // Read one byte past the declared end: finding it means the file grew.
      const file = createReadStream(part.path, { start: 0, end: part.size, highWaterMark: 256 * 1024 });
      for await (const data of file) {
        const chunk = data as Buffer;
        if (sent + chunk.length > part.size) {
          file.destroy();
          throw changedWhileSending(part);
        }
        sent += chunk.length;
        onChunk(chunk);
        yield chunk;
      }
    }
    if (sent !== part.size) throw changedWhileSending(part);
    yield tail;
  }

  return {
    body: Readable.from(chunks(), { objectMode: false }),
    contentType: `multipart/form-data; boundary=${boundary}`,
    length: head.length + part.size + tail.length,
  };
}

function changedWhileSending(part: FilePart): CliError {
  return new CliError(
    `${part.path} changed size while it was being uploaded; nothing was stored`,
    EXIT.error,
  );
}
