import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { CliError, EXIT, usageError } from './errors';
import type { ShoalClient, StoredFile } from './http-client';
import type { FilePart } from './multipart';
import { writeJson, writeOut } from './output';
import { startProgress } from './progress';

export interface PutOptions {
  json: boolean;
  progress: boolean;
  /** Content type for every file; guessed from each file's extension when absent. */
  type?: string;
}

/** The few types worth guessing: a browser opening a download from the console shows these inline. */
const TYPES: Record<string, string> = {
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.xml': 'application/xml',
  '.pdf': 'application/pdf',
  '.zip': 'application/zip',
  '.gz': 'application/gzip',
  '.tar': 'application/x-tar',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.svg': 'image/svg+xml',
  '.mp3': 'audio/mpeg',
  '.wav': 'audio/wav',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
};

export function guessContentType(name: string): string {
  return TYPES[extname(name).toLowerCase()] ?? 'application/octet-stream';
}

/** A content type as a header may carry it: `type/subtype` and parameters, nothing that ends a line. */
const CONTENT_TYPE = /^[\w!#$&^.+-]+\/[\w!#$&^.+-]+(\s*;\s*[\w!#$&^.+-]+=("[^"\r\n]*"|[\w!#$&^.+-]+))*$/;

export function checkContentType(type: string): string {
  if (!CONTENT_TYPE.test(type)) throw usageError(`--type is not a content type: ${JSON.stringify(type)}`);
  return type;
}

/** Every path must be a readable regular file before the first byte goes out. */
async function describeFiles(paths: string[], type: string | undefined): Promise<FilePart[]> {
  const parts: FilePart[] = [];
  for (const path of paths) {
    let info;
    try {
      info = await stat(path);
      await access(path, constants.R_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw usageError(code === 'ENOENT' ? `${path}: no such file` : `${path}: cannot read (${code ?? err})`);
    }
    if (!info.isFile()) throw usageError(`${path}: not a regular file`);
    const name = basename(path);
    parts.push({ path, name, size: info.size, contentType: type ?? guessContentType(name) });
  }
  return parts;
}

/**
 * Uploads the files one after another and prints each id as it is stored (or, with --json, the
 * stored descriptions at the end: one object for one file, an array for several). Stops at the
 * first failure; what was stored before it is still printed, so no id is ever lost.
 */
export async function putFiles(client: ShoalClient, paths: string[], options: PutOptions): Promise<void> {
  const parts = await describeFiles(paths, options.type);
  const stored: StoredFile[] = [];
  try {
    for (const part of parts) {
      const file = await putOne(client, part, options.progress);
      stored.push(file);
      if (!options.json) await writeOut(file.id + '\n');
    }
  } finally {
    if (options.json && stored.length > 0) await writeJson(parts.length === 1 ? stored[0] : stored);
  }
}

async function putOne(client: ShoalClient, part: FilePart, progress: boolean): Promise<StoredFile> {
  const hash = createHash('sha256');
  const bar = startProgress(part.name, part.size, progress);
  let file: StoredFile;
  try {
    file = await client.upload(part, (chunk) => {
      hash.update(chunk);
      bar.advance(chunk.length);
    });
  } finally {
    bar.stop();
  }
  // The server hashed what it received; if that is not what we read, say so rather than print an
  // id that names other bytes.
  const sent = hash.digest('hex');
  if (file.sha256 !== sent || file.size !== part.size) {
    throw new CliError(
      `${part.path}: the cluster stored ${file.size} bytes with sha256 ${file.sha256} as ${file.id}, ` +
        `but ${part.size} bytes with sha256 ${sent} were sent`,
      EXIT.error,
    );
  }
  return file;
}
