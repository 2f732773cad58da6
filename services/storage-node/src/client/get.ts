import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parse as parseDisposition } from 'content-disposition';
import { CliError, EXIT, networkError, usageError } from './errors';
import { discard, type Download, type ShoalClient } from './http-client';
import { writeJson, writeOut } from './output';
import { startProgress } from './progress';

export interface GetOptions {
  /** A file, a directory to save into, or `-` for stdout; the file's own name in `.` when absent. */
  output?: string;
  force: boolean;
  json: boolean;
  progress: boolean;
}

/** Passes the bytes on while hashing and counting them. */
class Sha256Tap extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;

  constructor(private readonly onBytes: (n: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes(chunk.length);
    cb(null, chunk);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/** The sha256 an ETag names (`"<hex>"`, as every Shoal node sends it), or undefined. */
export function sha256FromEtag(etag: string | string[] | undefined): string | undefined {
  if (typeof etag !== 'string') return undefined;
  const match = /^"([0-9a-f]{64})"$/i.exec(etag.trim());
  return match?.[1]?.toLowerCase();
}

/**
 * The original file name from a Content-Disposition header: the exact `filename*` (RFC 8187)
 * when present and decodable (UTF-8 or ISO-8859-1), else the plain `filename`.
 */
export function nameFromDisposition(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  return parseDisposition(header).parameters['filename'];
}

/** Longest local file name we create from a server-chosen name, in UTF-8 bytes (most file systems allow 255). */
const MAX_NAME_BYTES = 200;

/**
 * A server-chosen name made safe to create in a directory: one path component, no control
 * characters, never `.` or `..`; the id when nothing usable is left.
 */
export function safeFileName(name: string | undefined, id: string): string {
  // eslint-disable-next-line no-control-regex
  let safe = (name ?? '').replace(/[/\\\u0000-\u001f\u007f]/g, '_').trim();
  if (Buffer.byteLength(safe) > MAX_NAME_BYTES) {
    const ext = /\.[^.]{1,16}$/.exec(safe)?.[0] ?? '';
    let stem = safe.slice(0, safe.length - ext.length);
    while (Buffer.byteLength(stem + ext) > MAX_NAME_BYTES) stem = [...stem].slice(0, -1).join('');
    safe = stem + ext;
  }
  return safe === '' || safe === '.' || safe === '..' ? id : safe;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

function refuseOverwrite(path: string): CliError {
  return usageError(`${path} already exists; use --force to overwrite it`);
}

/**
 * Downloads one file to disk, stdout or a directory, and checks its sha256 against the ETag.
 * On disk the bytes go to a temp file beside the target, which is fsync'd and renamed over it
 * only when complete and verified, so the target never holds a partial or corrupt file; a failed
 * or interrupted download removes its temp file (there is no silent resume).
 */
export async function getFile(client: ShoalClient, id: string, options: GetOptions): Promise<void> {
  const toStdout = options.output === '-';
  if (toStdout && options.json) throw usageError('--json cannot be used with -o - (stdout carries the file)');
  const intoDir = options.output !== undefined && !toStdout && (await isDirectory(options.output));
  // Refuse before any transfer when the target is already known.
  if (
    options.output !== undefined &&
    !toStdout &&
    !intoDir &&
    !options.force &&
    (await exists(options.output))
  )
    throw refuseOverwrite(options.output);

  const download = await client.download(id);
  try {
    const expected = sha256FromEtag(download.headers.etag);
    if (expected === undefined)
      throw new CliError(
        `${client.where} sent no sha256 ETag for ${id}; the download cannot be verified`,
        EXIT.error,
      );
    const length = Number(download.headers['content-length']);
    const name = nameFromDisposition(download.headers['content-disposition']);
    const label = name ?? id;

    if (toStdout) {
      const tap = await receive(download, process.stdout, 'stdout', client.where, label, length, {
        progress: options.progress,
        end: false,
      });
      verify(tap, expected, length, 'the bytes written to stdout');
      return;
    }

    const target =
      options.output === undefined
        ? safeFileName(name, id)
        : intoDir
          ? join(options.output, safeFileName(name, id))
          : options.output;
    if (!options.force && (await exists(target))) throw refuseOverwrite(target);
    await saveVerified(download, target, expected, length, client.where, label, options);
    if (options.json) {
      await writeJson({
        id,
        name: name ?? null,
        size: length,
        sha256: expected,
        contentType: download.headers['content-type'] ?? null,
        path: target,
      });
    } else {
      await writeOut(target + '\n');
    }
  } finally {
    // A no-op after a complete transfer; otherwise it closes the connection instead of reading on.
    discard(download.body);
  }
}

async function saveVerified(
  download: Download,
  target: string,
  expected: string,
  length: number,
  where: string,
  label: string,
  options: GetOptions,
): Promise<void> {
  const base = basename(target);
  const temp = join(
    dirname(target),
    `.${[...base].slice(0, 64).join('')}.${randomBytes(6).toString('hex')}.shoal-part`,
  );
  let kept = false;
  try {
    // O_EXCL: never write into a file someone else made, even under a name we chose.
    const sink = createWriteStream(temp, { flags: 'wx', mode: 0o666 });
    const tap = await receive(download, sink, target, where, label, length, {
      progress: options.progress,
      end: true,
    });
    verify(tap, expected, length, `the download of ${target}`);
    // Durable before it takes the target's name: a crash never leaves a short file there.
    const handle = await open(temp, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    // Checked again: the file may have appeared while the bytes were on their way.
    if (!options.force && (await exists(target))) throw refuseOverwrite(target);
    await rename(temp, target);
    kept = true;
  } finally {
    if (!kept) await unlink(temp).catch(() => undefined);
  }
}

/**
 * Streams the body into `sink` through the hashing tap. A failure of the sink (a full disk, a
 * closed stdout) is reported as ours; anything else broke on the way from the node.
 */
async function receive(
  download: Download,
  sink: NodeJS.WritableStream,
  sinkName: string,
  where: string,
  label: string,
  length: number,
  options: { progress: boolean; end: boolean },
): Promise<Sha256Tap> {
  const bar = startProgress(label, Number.isFinite(length) ? length : 0, options.progress);
  const tap = new Sha256Tap((n) => bar.advance(n));
  let sinkError: NodeJS.ErrnoException | undefined;
  const onSinkError = (err: NodeJS.ErrnoException): void => {
    sinkError ??= err;
  };
  sink.on('error', onSinkError);
  try {
    await pipeline(download.body, tap, sink, { end: options.end });
  } catch (err) {
    if (sinkError?.code === 'EPIPE') throw new CliError('', EXIT.error, { cause: sinkError });
    if (sinkError) {
      throw new CliError(`cannot write ${sinkName}: ${sinkError.code ?? sinkError.message}`, EXIT.error, {
        cause: sinkError,
      });
    }
    throw networkError(err, where);
  } finally {
    sink.off('error', onSinkError);
    bar.stop();
  }
  return tap;
}

function verify(tap: Sha256Tap, expected: string, length: number, what: string): void {
  if (Number.isFinite(length) && tap.bytes !== length) {
    throw new CliError(`${what} ended after ${tap.bytes} of ${length} bytes`, EXIT.error);
  }
  const actual = tap.digest();
  if (actual !== expected) {
    throw new CliError(`${what} failed verification: sha256 ${actual}, expected ${expected}`, EXIT.error);
  }
}
