import { ShoalError, errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import type { FileMeta, FileRecord, LocalListing } from '../../../../shared/protocol';
import type { Membership } from '../membership/membership';
import type { Nodes } from '../replication/nodes';
import { callQuorum, requireQuorum } from '../replication/quorum';

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
    private readonly writeQuorum: number,
    private readonly membership: Membership,
    private readonly nodes: Nodes,
    private readonly log: Logger,
  ) {}

  /**
   * Leaves a tombstone on every live member that knows the file, so the delete holds even where a
   * copy is later found again. Needs W members to answer (as a write does); 404 when no member
   * had a live copy.
   */
  async delete(fileId: string, reqId: string): Promise<void> {
    const deletedAt = new Date().toISOString();
    const members = this.nodes.live();
    const quorum = Math.min(this.writeQuorum, members.length);
    const result = await callQuorum(members, (peer) => peer.delete(fileId, deletedAt, { reqId }), { quorum });
    for (const { target, error } of result.failed) {
      this.log.warn(
        { fileId, peer: target.id, reqId, err: errorText(error) },
        'delete not confirmed by a member',
      );
    }
    requireQuorum(result, quorum, (n) => `only ${n} node(s) confirmed the delete; try again`);
    if (!result.succeeded.some((s) => s.value.wasLive)) throw new ShoalError('not_found', 'no such file');
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
    const members = this.nodes.live();
    // Each member answers for its own records; whoever does not answer is left out of this page.
    const result = await callQuorum(members, (peer) => peer.list(after, limit, reqId), { quorum: 1 });
    for (const { target, error } of result.failed) {
      this.log.warn({ peer: target.id, reqId, err: errorText(error) }, 'member could not list its files');
    }
    const answers = members.map(
      (m): LocalListing | undefined => result.succeeded.find((s) => s.target === m)?.value,
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

  localListing(after: string, limit: number): Promise<LocalListing> {
    return this.nodes.self.list(after, limit);
  }

  /** Where the copies of one file are: its home members and any other member holding it. */
  async info(fileId: string, reqId: string): Promise<FileInfo> {
    const home = this.membership.placement().place(fileId).home;
    const members = this.nodes.live();
    const result = await callQuorum(members, (peer) => peer.record(fileId, { timeoutMs: 5_000, reqId }), {
      quorum: 1,
    });
    const answers = members.map((m): FileRecord | undefined | 'unreachable' => {
      const answer = result.succeeded.find((s) => s.target === m);
      return answer ? answer.value : 'unreachable';
    });
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
