import { createHash } from 'node:crypto';
// The count is part of the wire protocol (partition bitmaps and digests carry it), so it lives there.
import { objectPartitionOf } from '../../../../shared/ids';
import { PARTITION_COUNT } from '../../../../shared/protocol';

/**
 * Placement is a pure function of (file id, membership): every node computes the same answer
 * from the same member list, so no node needs to ask another where a file lives.
 *
 * 1. A file id maps to one of PARTITION_COUNT fixed partitions (a hash of the id). Partitions
 *    are the unit that repair and rebalance reason about; the count never changes.
 * 2. A partition maps to an ordering of the members by rendezvous (highest-random-weight)
 *    hashing: each member gets a score hash(member, partition) and members are sorted by score.
 *    The first N of that order are the partition's home replicas; the rest are the order in which
 *    stand-ins are tried when a home member cannot take a copy.
 *
 * Rendezvous hashing moves the minimum: when a member joins, it takes first place exactly in the
 * partitions where its score beats everyone else's (about 1/(n+1) of them) and nothing else
 * reorders; when a member leaves, only the partitions it was home for change.
 */
export { PARTITION_COUNT };

export function partitionOf(fileId: string): number {
  // An S3 object's file carries its key's partition (shared/ids.ts): every version of a key
  // lives with the others.
  const own = objectPartitionOf(fileId);
  if (own !== undefined && own < PARTITION_COUNT) return own;
  const digest = createHash('sha256').update(fileId).digest();
  return digest.readUInt32BE(0) % PARTITION_COUNT;
}

/** The partition of an S3 key: where every version of it lives (see objectFileId). */
export function keyPartition(bucket: string, key: string): number {
  const digest = createHash('sha256').update(`${bucket}\u0000${key}`).digest();
  return digest.readUInt32BE(0) % PARTITION_COUNT;
}

function score(memberId: string, partition: number): number {
  // 48 bits of sha256 fit a JS number exactly; collisions between two members are vanishingly rare
  // and broken by id below, so the order is total and the same on every node.
  return createHash('sha256').update(`${partition}\u0000${memberId}`).digest().readUIntBE(0, 6);
}

/** Every member, best first, for one partition. The input order of `memberIds` does not matter. */
export function rankMembers(partition: number, memberIds: readonly string[]): string[] {
  return memberIds
    .map((id) => ({ id, score: score(id, partition) }))
    .sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((m) => m.id);
}

export interface Placement {
  partition: number;
  /** Every member in preference order. */
  order: string[];
  /** The first `replicas` members of `order`: where the copies belong. */
  home: string[];
}

export function placeFile(fileId: string, memberIds: readonly string[], replicas: number): Placement {
  const partition = partitionOf(fileId);
  const order = rankMembers(partition, memberIds);
  return { partition, order, home: order.slice(0, replicas) };
}

/**
 * Memoises rankings for one membership snapshot. Rankings are pure, so the cache only has to be
 * dropped when the member set changes, which the owner signals by building a new PlacementTable.
 */
export class PlacementTable {
  private readonly cache = new Map<number, string[]>();
  readonly members: readonly string[];

  constructor(
    memberIds: readonly string[],
    readonly replicas: number,
  ) {
    this.members = [...memberIds].sort();
  }

  orderFor(partition: number): string[] {
    let order = this.cache.get(partition);
    if (!order) {
      order = rankMembers(partition, this.members);
      this.cache.set(partition, order);
    }
    return order;
  }

  place(fileId: string): Placement {
    const partition = partitionOf(fileId);
    const order = this.orderFor(partition);
    return { partition, order, home: order.slice(0, this.replicas) };
  }
}
