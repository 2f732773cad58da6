import { ShoalError, errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import type { FileMeta, FileRecord, LocalListing } from '../../../../shared/protocol';
import type { Membership } from '../membership/membership';
import type { PeerClient } from '../peers/peer-client';
import type { BlobStore } from '../store/blob-store';
import type { MetadataStore } from '../store/metadata';

export interface FileSummary extends FileMeta {
  replicas: string[];
}

export interface ReplicaState {
  nodeId: string;
  url: string;
  state: 'ok' | 'missing' | 'unreachable';
}

export interface FileInfo extends FileMeta {
  replicas: ReplicaState[];
}

export const MAX_PAGE = 1000;

/**
 * Cluster-wide questions about files that every live member must be asked: delete, list, and
 * where the copies of one file are. Each node answers only from its own metadata; this class
 * merges the answers.
 */
export class Catalog {
  constructor(
    private readonly selfId: string,
    private readonly writeQuorum: number,
    private readonly membership: Membership,
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly peers: PeerClient,
    private readonly log: Logger,
  ) {}

  /**
   * Leaves a tombstone on every live member that knows the file, so the delete holds even where a
   * copy is later found again. Needs W members to answer (as a write does); 404 when no member
   * had a live copy.
   */
  async delete(fileId: string, reqId: string): Promise<void> {
    const deletedAt = new Date().toISOString();
    const members = this.liveMembers();
    const answers = await Promise.all(
      members.map(async (m) => {
        try {
          return m.id === this.selfId
            ? await this.blobs.delete(fileId, deletedAt)
            : await this.peers.deleteFile(m.url, fileId, deletedAt, reqId);
        } catch (err) {
          this.log.warn(
            { fileId, peer: m.id, reqId, err: errorText(err) },
            'delete not confirmed by a member',
          );
          return undefined;
        }
      }),
    );
    const confirmed = answers.filter((a) => a !== undefined);
    if (confirmed.length < Math.min(this.writeQuorum, members.length)) {
      throw new ShoalError(
        'quorum_unavailable',
        `only ${confirmed.length} node(s) confirmed the delete; try again`,
      );
    }
    if (!confirmed.some((a) => a.wasLive)) throw new ShoalError('not_found', 'no such file');
  }

  /**
   * One page of the whole cluster's files, ordered by id. Every live member returns its next
   * `limit` records after `after` (tombstones included); a file is listed if some member has it
   * live and none has a tombstone. Ids past the smallest last id of any member whose answer was
   * cut short cannot be judged yet and wait for the next page.
   */
  async list(
    after: string,
    limit: number,
    reqId: string,
  ): Promise<{ files: FileSummary[]; next: string | null }> {
    const members = this.liveMembers();
    const answers = await Promise.all(
      members.map(async (m): Promise<LocalListing | undefined> => {
        try {
          if (m.id === this.selfId) return this.localListing(after, limit);
          return await this.peers.listRecords(m.url, after, limit, reqId);
        } catch (err) {
          this.log.warn({ peer: m.id, reqId, err: errorText(err) }, 'member could not list its files');
          return undefined;
        }
      }),
    );
    let horizon: string | undefined;
    const byId = new Map<string, { record: FileRecord; holders: string[]; deleted: boolean }>();
    answers.forEach((answer, i) => {
      if (!answer) return;
      const last = answer.records[answer.records.length - 1];
      if (answer.truncated && last && (horizon === undefined || last.id < horizon)) horizon = last.id;
      for (const record of answer.records) {
        const entry = byId.get(record.id) ?? { record, holders: [], deleted: false };
        if (record.state === 'deleted') entry.deleted = true;
        else {
          entry.holders.push(members[i]!.id);
          if (entry.record.state === 'deleted') entry.record = record;
        }
        byId.set(record.id, entry);
      }
    });
    const ids = [...byId.keys()].filter((id) => horizon === undefined || id <= horizon).sort(byteOrder);
    const files: FileSummary[] = [];
    let lastSeen: string | undefined;
    for (const id of ids) {
      if (files.length === limit) break;
      lastSeen = id;
      const entry = byId.get(id)!;
      if (entry.deleted || entry.holders.length === 0) continue;
      files.push({ ...toMeta(entry.record), replicas: entry.holders.sort(byteOrder) });
    }
    const more = horizon !== undefined || ids.length > (lastSeen ? ids.indexOf(lastSeen) + 1 : 0);
    return { files, next: more && lastSeen !== undefined ? lastSeen : null };
  }

  localListing(after: string, limit: number): LocalListing {
    const records = this.metadata.listAfter(after, limit + 1);
    const truncated = records.length > limit;
    return { records: records.slice(0, limit), truncated };
  }

  /** Where the copies of one file are: its home members and any other member holding it. */
  async info(fileId: string, reqId: string): Promise<FileInfo> {
    const home = this.membership.placement().place(fileId).home;
    const members = this.liveMembers();
    const answers = await Promise.all(
      members.map(async (m): Promise<FileRecord | undefined | 'unreachable'> => {
        try {
          return m.id === this.selfId
            ? this.metadata.get(fileId)
            : await this.peers.record(m.url, fileId, 5_000, reqId);
        } catch {
          return 'unreachable';
        }
      }),
    );
    let record: FileRecord | undefined;
    let deleted = false;
    const states = new Map<string, ReplicaState>();
    answers.forEach((a, i) => {
      const m = members[i]!;
      if (a === 'unreachable') states.set(m.id, { nodeId: m.id, url: m.url, state: 'unreachable' });
      else if (a?.state === 'live') {
        record ??= a;
        states.set(m.id, { nodeId: m.id, url: m.url, state: 'ok' });
      } else {
        if (a?.state === 'deleted') deleted = true;
        states.set(m.id, { nodeId: m.id, url: m.url, state: 'missing' });
      }
    });
    if (!record || deleted) throw new ShoalError('not_found', 'no such file');
    const replicas: ReplicaState[] = home.map(
      (id) => states.get(id) ?? { nodeId: id, url: this.membership.urlOf(id) ?? '', state: 'unreachable' },
    );
    for (const s of states.values()) if (s.state === 'ok' && !home.includes(s.nodeId)) replicas.push(s);
    return { ...toMeta(record), replicas };
  }

  private liveMembers(): Array<{ id: string; url: string }> {
    return this.membership.view().filter((m) => m.state !== 'dead');
  }
}

export function toMeta(r: FileMeta): FileMeta {
  return {
    id: r.id,
    name: r.name,
    size: r.size,
    sha256: r.sha256,
    contentType: r.contentType,
    createdAt: r.createdAt,
  };
}

function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
