import { ShoalError, errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import { metaOf, type FileMeta, type FileRecord, type LocalListing } from '../../../../shared/protocol';
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
   * Deletes are as durable as uploads: 204 only once W of the file's home members hold its
   * tombstone durably, whether or not they held the file, with the next members in placement
   * order standing in for home members that cannot be reached (as hinted handoff does for copies;
   * anti-entropy hands the tombstone on when they are back). Holders outside those get it too.
   *
   * Nothing changes before it is clear that W nodes can take the tombstone: a delete that cannot
   * reach them answers 503 and the file stays readable. An id no reachable member knows is 404
   * when every home member answered (never stored, or already deleted) and 503 when some could
   * not be asked (its holders may just be unreachable). An unknown id leaves no tombstone.
   */
  async delete(fileId: string, reqId: string): Promise<void> {
    const { order, home } = this.membership.placement().place(fileId);
    const live = this.nodes.live();
    const probe = await callQuorum(live, (peer) => peer.record(fileId, { timeoutMs: 5_000, reqId }), {
      quorum: 0,
    });
    const answered = new Map(probe.succeeded.map((s) => [s.target.id, s.value]));
    const holders = probe.succeeded.filter((s) => s.value?.state === 'live').map((s) => s.target);
    if (holders.length === 0) {
      const deleted = probe.succeeded.some((s) => s.value?.state === 'deleted');
      if (deleted || home.every((id) => answered.has(id))) throw new ShoalError('not_found', 'no such file');
      throw new ShoalError(
        'quorum_unavailable',
        'the nodes that would hold this file cannot all be reached; nothing was deleted, try again',
      );
    }

    const homes = home.filter((id) => answered.has(id));
    const standIns = order
      .filter((id) => !home.includes(id) && answered.has(id))
      .slice(0, home.length - homes.length);
    const targets = [...homes, ...standIns].flatMap((id) => {
      const peer = this.nodes.get(id);
      return peer ? [peer] : [];
    });
    const quorum = this.writeQuorum;
    if (targets.length < quorum) {
      throw new ShoalError(
        'quorum_unavailable',
        `only ${targets.length} node(s) can take the delete, ${quorum} are needed; nothing was deleted, try again`,
      );
    }
    const deletedAt = new Date().toISOString();
    const strays = holders.filter((h) => !targets.includes(h));
    const [result] = await Promise.all([
      callQuorum(targets, (peer) => peer.delete(fileId, deletedAt, { force: true, reqId }), { quorum }),
      // Copies outside the targets (stand-ins of an upload, a draining member) go at once too;
      // anti-entropy would remove them anyway.
      callQuorum(strays, (peer) => peer.delete(fileId, deletedAt, { reqId }), { quorum: 0 }),
    ]);
    for (const { target, error } of result.failed) {
      this.log.warn(
        { fileId, peer: target.id, reqId, err: errorText(error) },
        'delete not confirmed by a member',
      );
    }
    requireQuorum(
      result,
      quorum,
      (n) =>
        `the delete reached only ${n} of the ${quorum} nodes it needs; it completes when they are back, try again`,
    );
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
      files.push({ ...metaOf(entry.record), replicas: entry.holders.sort(byteOrder) });
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
    // Where clients reach each node (not its internal port, if it has one).
    const state = (nodeId: string, s: ReplicaState['state']): ReplicaState => ({
      nodeId,
      url: this.membership.publicUrlOf(nodeId) ?? '',
      state: s,
    });
    answers.forEach((a, i) => {
      const m = members[i]!;
      if (a === 'unreachable') states.set(m.id, state(m.id, 'unreachable'));
      else if (a?.state === 'live') {
        record ??= a;
        states.set(m.id, state(m.id, 'ok'));
      } else {
        if (a?.state === 'deleted') deleted = true;
        states.set(m.id, state(m.id, 'missing'));
      }
    });
    if (!record || deleted) throw new ShoalError('not_found', 'no such file');
    const replicas: ReplicaState[] = home.map((id) => states.get(id) ?? state(id, 'unreachable'));
    for (const s of states.values()) if (s.state === 'ok' && !home.includes(s.nodeId)) replicas.push(s);
    return { ...metaOf(record), replicas };
  }
}

function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
