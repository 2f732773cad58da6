import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { errorText } from '../../../../shared/errors';
import {
  checksumAlgorithmOf,
  combineCrcs,
  createChecksum,
  type ChecksumAlgorithm,
} from '../../../../shared/checksums';
import { newFileId } from '../../../../shared/ids';
import type { Logger } from '../../../../shared/logging';
import { decideRead } from '../../../../shared/read-decision';
import type { FileRecord } from '../../../../shared/protocol';
import type { FileReader } from '../files/download';
import type { Nodes } from '../replication/nodes';
import { callQuorum } from '../replication/quorum';
import { S3Error } from './errors';
import { UPLOAD_RECORD_TYPE, compareKeys } from './listing';
import {
  MANIFEST_TYPE,
  attrsOf,
  isManifest,
  type ChecksumType,
  type Manifest,
  type ObjectAttrs,
  type S3Objects,
} from './objects';

/**
 * Multipart uploads with no node in charge of one. An upload is a zero-byte record file and one
 * file per part, all in the key's partition and tagged with the upload's id, written with the
 * same quorum write as any file: so each part may go to a different node (as clients and load
 * balancers send them), and the upload's state is what the key's members hold, not what one
 * node remembers. Completing writes the object's version as a manifest (the list of part files),
 * so no byte is copied; the parts then belong to that version and are reclaimed with it.
 */

/** The content type of a part's file. */
export const PART_TYPE = 'application/x-shoal-part';
/** S3's limits. */
export const MAX_PARTS = 10_000;
export const MIN_PART_SIZE = 5 * 1024 * 1024;

/** What an upload's record keeps: what the object will be stored with. */
export interface UploadAttrs extends Omit<ObjectAttrs, 'etag' | 'checksum' | 'size' | 'parts' | 'upload'> {
  /** The checksum algorithm the upload was created with, if any, and how it covers the object. */
  algorithm?: string;
  checksumType?: ChecksumType;
}

/** What a part's file keeps. */
export interface PartAttrs {
  part: number;
  etag: string;
  checksum?: { algorithm: string; value: string };
}

export interface UploadState {
  record: FileRecord;
  attrs: UploadAttrs;
  /** The newest file of each part number, by number. */
  parts: Map<number, { record: FileRecord; attrs: PartAttrs }>;
  /** Every part file, the replaced ones too. */
  files: FileRecord[];
}

export interface UploadSummary {
  key: string;
  upload: string;
  initiated: string;
}

export class S3Multipart {
  constructor(
    private readonly objects: S3Objects,
    private readonly reader: FileReader,
    private readonly nodes: Nodes,
    private readonly writeQuorum: number,
    private readonly log: Logger,
  ) {}

  async create(bucket: string, key: string, attrs: UploadAttrs, reqId: string): Promise<string> {
    const upload = newFileId();
    await this.objects.write(
      { bucket, key, upload },
      Readable.from([]),
      UPLOAD_RECORD_TYPE,
      () => attrs,
      reqId,
    );
    return upload;
  }

  /** The upload's record and parts; NoSuchUpload when its record is gone (completed, aborted, never made). */
  async state(bucket: string, key: string, upload: string, reqId: string): Promise<UploadState> {
    const files = await this.objects.versions(bucket, key, reqId, upload);
    const record = files.find((f) => f.contentType === UPLOAD_RECORD_TYPE);
    if (!record)
      throw new S3Error(
        'NoSuchUpload',
        'The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
      );
    const parts = new Map<number, { record: FileRecord; attrs: PartAttrs }>();
    const partFiles = files.filter((f) => f.contentType === PART_TYPE);
    // Newest first: the first file of a number is the one that counts.
    for (const file of partFiles) {
      const attrs = JSON.parse(file.object!.attrs) as PartAttrs;
      if (!parts.has(attrs.part)) parts.set(attrs.part, { record: file, attrs });
    }
    return { record, attrs: JSON.parse(record.object!.attrs) as UploadAttrs, parts, files: partFiles };
  }

  /**
   * Stores one part of an upload the caller found (state()); `finish` checks the body as for a
   * PutObject and gives the part's ETag and checksum.
   */
  async uploadPart(
    bucket: string,
    key: string,
    upload: string,
    part: number,
    body: Readable,
    finish: (sha256: string, size: number) => Omit<PartAttrs, 'part'>,
    reqId: string,
  ): Promise<PartAttrs> {
    const { attrs } = await this.objects.write(
      { bucket, key, upload },
      body,
      PART_TYPE,
      (write) => ({ part, ...finish(write.sha256, write.size) }),
      reqId,
    );
    return attrs;
  }

  /**
   * Makes the object from the parts the client names (ascending numbers, each with the ETag it
   * got): a version whose file is the manifest of those parts. A retry of a completion that
   * succeeded answers what the first one did.
   */
  async complete(
    bucket: string,
    key: string,
    upload: string,
    requested: Array<{ part: number; etag: string }>,
    reqId: string,
    /** What the client's request says of the object, checked: its checksum in an algorithm, its size. */
    claimed: {
      checksum?: (algorithm: ChecksumAlgorithm) => string | undefined;
      size?: number | undefined;
    } = {},
  ): Promise<CompletedUpload> {
    let state: UploadState;
    try {
      state = await this.state(bucket, key, upload, reqId);
    } catch (err) {
      if (!(err instanceof S3Error && err.code === 'NoSuchUpload')) throw err;
      const done = (await this.objects.versions(bucket, key, reqId)).find(
        (v) => isManifest(v) && attrsOf(v).upload === upload,
      );
      if (!done) throw err;
      const attrs = attrsOf(done);
      return {
        etag: attrs.etag,
        ...(attrs.checksum ? { checksum: attrs.checksum } : {}),
        checksumType: attrs.checksumType ?? 'COMPOSITE',
        createdAt: done.createdAt,
      };
    }
    if (requested.length === 0) throw new S3Error('MalformedXML', 'You must specify at least one part');
    const chosen: Array<{ record: FileRecord; attrs: PartAttrs }> = [];
    let previous = 0;
    for (const { part, etag } of requested) {
      if (part <= previous)
        throw new S3Error(
          'InvalidPartOrder',
          'The list of parts was not in ascending order. Parts must be ordered by part number.',
        );
      previous = part;
      const stored = state.parts.get(part);
      if (!stored || stored.attrs.etag !== etag.replace(/^"|"$/g, ''))
        throw new S3Error(
          'InvalidPart',
          "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
        );
      chosen.push(stored);
    }
    chosen.forEach((p, i) => {
      if (i < chosen.length - 1 && p.record.size < MIN_PART_SIZE)
        throw new S3Error(
          'EntityTooSmall',
          'Your proposed upload is smaller than the minimum allowed object size.',
        );
    });
    const md5s = Buffer.concat(chosen.map((p) => Buffer.from(p.attrs.etag, 'hex')));
    const etag = `${createHash('md5').update(md5s).digest('hex')}-${chosen.length}`;
    const checksumType = state.attrs.checksumType ?? 'COMPOSITE';
    const checksum = objectChecksum(state.attrs.algorithm, checksumType, chosen);
    checkClaim(checksum, checksumType, claimed.checksum ?? (() => undefined));
    const manifest: Manifest = { parts: chosen.map((p) => ({ id: p.record.id, size: p.record.size })) };
    const size = chosen.reduce((n, p) => n + p.record.size, 0);
    if (claimed.size !== undefined && claimed.size !== size)
      throw new S3Error(
        'InvalidRequest',
        `The object is ${size} bytes, not the ${claimed.size} that x-amz-mp-object-size says.`,
      );
    const { algorithm: _algorithm, ...stored } = state.attrs;
    const attrs: ObjectAttrs = {
      ...stored,
      etag,
      size,
      parts: chosen.length,
      upload,
      ...(checksum ? { checksum } : {}),
      checksumType,
    };
    const { meta } = await this.objects.write(
      { bucket, key },
      Readable.from([Buffer.from(JSON.stringify(manifest))]),
      MANIFEST_TYPE,
      () => attrs,
      reqId,
    );
    // The record first: once it is gone, the upload is no longer listed nor completed twice.
    await this.objects.deleteFile(state.record.id, reqId);
    const used = new Set(manifest.parts.map((p) => p.id));
    this.objects.reclaim(
      state.files.filter((f) => !used.has(f.id)),
      [],
      reqId,
    );
    this.objects.reclaimOlderThan(bucket, key, meta.id, reqId);
    return { etag, ...(checksum ? { checksum } : {}), checksumType, createdAt: meta.createdAt };
  }

  /**
   * Aborts an upload: its record, then its parts. Parts that a completed version lists (a
   * completion that died before it removed the record) are kept.
   */
  async abort(bucket: string, key: string, upload: string, reqId: string): Promise<void> {
    const state = await this.state(bucket, key, upload, reqId);
    await this.objects.deleteFile(state.record.id, reqId);
    await this.dropUnlisted(bucket, key, upload, state.files, reqId);
  }

  /**
   * Removes the parts a crash left of an upload that has no record any more (an abort or a
   * completion that died part-way, or a part stored in a race with either); the parts a completed
   * version lists stay. Nothing is removed while the record is there: the upload is either in
   * progress or, once expired, the sweep's to abort. Returns how many files were removed.
   */
  async removeOrphans(bucket: string, key: string, upload: string, reqId: string): Promise<number> {
    const files = await this.objects.versions(bucket, key, reqId, upload);
    if (files.some((f) => f.contentType === UPLOAD_RECORD_TYPE)) return 0;
    return this.dropUnlisted(bucket, key, upload, files, reqId);
  }

  /** Deletes those of an upload's `files` that no completed version of the key lists. */
  private async dropUnlisted(
    bucket: string,
    key: string,
    upload: string,
    files: FileRecord[],
    reqId: string,
  ): Promise<number> {
    const used = new Set<string>();
    for (const version of await this.objects.versions(bucket, key, reqId)) {
      if (!isManifest(version) || attrsOf(version).upload !== upload) continue;
      for (const part of (await this.objects.manifestOf(version, reqId)).parts) used.add(part.id);
    }
    const unlisted = files.filter((f) => !used.has(f.id));
    await Promise.all(unlisted.map((f) => this.objects.deleteFile(f.id, reqId)));
    return unlisted.length;
  }

  /** A page of the bucket's uploads in (key, upload id) order, after a point, every live member asked. */
  async list(
    bucket: string,
    prefix: string,
    after: { key: string; upload: string },
    limit: number,
    reqId: string,
  ): Promise<{ uploads: UploadSummary[]; truncated: boolean }> {
    const live = this.nodes.live();
    const result = await callQuorum(live, (peer) => peer.listUploads(bucket, after, limit, reqId), {
      quorum: live.length,
    });
    // As for listing keys (S3Objects.list): an upload's record is on W members at least.
    if (result.failed.length >= this.writeQuorum || result.succeeded.length === 0)
      throw new S3Error(
        'ServiceUnavailable',
        'Nodes holding part of this bucket could not list its uploads; try again.',
      );
    // As for a listing of keys: nothing past the first point where a member's answer was cut short.
    let horizon: UploadSummary | undefined;
    const seen = new Map<string, UploadSummary>();
    for (const { value } of result.succeeded) {
      const summaries = value.records.map((r) => ({
        key: r.object!.key,
        upload: r.object!.upload!,
        initiated: r.createdAt,
      }));
      const last = summaries[summaries.length - 1];
      if (value.truncated && last && (!horizon || compareUploads(last, horizon) < 0)) horizon = last;
      for (const s of summaries) seen.set(`${s.upload}`, s);
    }
    const uploads = [...seen.values()]
      .filter((u) => u.key.startsWith(prefix) && (!horizon || compareUploads(u, horizon) <= 0))
      .sort(compareUploads);
    return { uploads: uploads.slice(0, limit), truncated: horizon !== undefined || uploads.length > limit };
  }

  /**
   * Removes the uploads begun more than `maxAgeMs` ago among `records` (this node's own upload
   * records): each is aborted by the first live member of its key's placement, so one member
   * does it, whichever members hold it. Returns how many were removed.
   */
  async sweep(maxAgeMs: number, records: (before: string) => FileRecord[]): Promise<number> {
    const before = new Date(Date.now() - maxAgeMs).toISOString();
    let aborted = 0;
    for (const file of records(before)) {
      const { bucket, key, upload } = file.object!;
      if (upload === undefined || !this.objects.sweeps(bucket, key)) continue;
      try {
        await this.abort(bucket, key, upload, `sweep-${upload}`);
        aborted++;
        this.log.info({ bucket, key, upload }, 'abandoned multipart upload removed');
      } catch (err) {
        this.log.warn(
          { bucket, key, upload, err: errorText(err) },
          'could not remove an abandoned multipart upload',
        );
      }
    }
    return aborted;
  }

  /**
   * A multipart object's bytes, or a range of them: each part read in turn from whichever copy
   * survives (FileReader), verified as any file is.
   */
  async open(
    version: FileRecord,
    attrs: ObjectAttrs,
    request: { method: 'GET' | 'HEAD'; range?: string | undefined; reqId: string },
  ): Promise<{ status: 200 | 206 | 304 | 416; start: number; end: number; body: Readable | undefined }> {
    const size = attrs.size ?? 0;
    const decision = decideRead({ size, sha256: '' }, { range: request.range });
    if (request.method === 'HEAD' || decision.status === 416 || decision.end < decision.start)
      return { ...decision, body: undefined };
    const manifest = await this.objects.manifestOf(version, request.reqId);
    const reader = this.reader;
    const { start, end } = decision;
    async function* bytes(): AsyncGenerator<Buffer> {
      let offset = 0;
      for (const part of manifest.parts) {
        const from = Math.max(start, offset);
        const to = Math.min(end, offset + part.size - 1);
        offset += part.size;
        if (from > to) continue;
        const read = await reader.open(part.id, {
          method: 'GET',
          range: `bytes=${from - (offset - part.size)}-${to - (offset - part.size)}`,
          reqId: request.reqId,
        });
        for await (const chunk of read.body ?? []) yield chunk as Buffer;
      }
    }
    return { ...decision, body: Readable.from(bytes(), { objectMode: false }) };
  }
}

function compareUploads(a: { key: string; upload: string }, b: { key: string; upload: string }): number {
  return compareKeys(a.key, b.key) || (a.upload < b.upload ? -1 : a.upload > b.upload ? 1 : 0);
}

/**
 * S3's checksum of a multipart object made of parts that each carry one: the checksum of their
 * checksums' bytes, then `-N`. Undefined when the upload named no algorithm or a part lacks it.
 */
/**
 * A multipart object's checksum, from its parts' (each computed as the part streamed in, in the
 * upload's algorithm): COMPOSITE, the checksum of the parts' checksums with `-N` after it, or
 * FULL_OBJECT, the CRC of all the bytes, combined from the parts' CRCs and sizes.
 */
function objectChecksum(
  named: string | undefined,
  type: ChecksumType,
  parts: Array<{ record: FileRecord; attrs: PartAttrs }>,
): { algorithm: string; value: string } | undefined {
  const algorithm: ChecksumAlgorithm | undefined = named ? checksumAlgorithmOf(named) : undefined;
  if (!algorithm || parts.some((p) => p.attrs.checksum?.algorithm !== algorithm)) return undefined;
  const sums = parts.map((p) => Buffer.from(p.attrs.checksum!.value, 'base64'));
  if (type === 'FULL_OBJECT') {
    const crcs = sums.map((crc, i) => ({ crc, size: parts[i]!.record.size }));
    return { algorithm, value: combineCrcs(algorithm, crcs).toString('base64') };
  }
  const sum = createChecksum(algorithm);
  for (const s of sums) sum.update(s);
  return { algorithm, value: `${sum.digest().toString('base64')}-${parts.length}` };
}

/** A checksum the client sent with its completion must be the object's (a COMPOSITE one with or without its `-N`). */
function checkClaim(
  checksum: { algorithm: string; value: string } | undefined,
  type: ChecksumType,
  claimed: (algorithm: ChecksumAlgorithm) => string | undefined,
): void {
  const algorithm = checksum && checksumAlgorithmOf(checksum.algorithm);
  const claim = algorithm && claimed(algorithm);
  if (!checksum || !claim) return;
  const bare = (value: string) => (type === 'COMPOSITE' ? value.replace(/-\d+$/, '') : value);
  if (bare(claim) !== bare(checksum.value))
    throw new S3Error(
      'BadDigest',
      `The ${algorithm!.toUpperCase()} you specified did not match the calculated checksum.`,
    );
}

export interface CompletedUpload {
  etag: string;
  checksum?: { algorithm: string; value: string };
  checksumType: ChecksumType;
  createdAt: string;
}
