/**
 * The node-to-node protocol: paths, headers and message shapes every node speaks. Kept in one
 * place so the client (peers/) and the server (http/) cannot drift apart.
 */

export const INTERNAL_PREFIX = '/internal/v1';

export const HEADER_AUTH = 'x-shoal-auth';
export const HEADER_NODE = 'x-shoal-node';
export const HEADER_REQUEST_ID = 'x-request-id';
export const HEADER_META = 'x-shoal-meta';

/** What every node stores about a file besides its bytes. Immutable once written. */
export interface FileMeta {
  id: string;
  name: string;
  size: number;
  sha256: string;
  contentType: string;
  createdAt: string;
}

/** A file as a node's metadata knows it: live, or a tombstone left by a delete. */
export interface FileRecord extends FileMeta {
  state: 'live' | 'deleted';
  deletedAt: string | null;
  /** Set when this node holds the copy on behalf of a home node that was down (hinted handoff). */
  heldFor: string | null;
}

export type MemberState = 'alive' | 'suspect' | 'dead';

/**
 * One member as gossip carries it (SWIM). Only the member itself raises its incarnation, to
 * refute a suspicion; a process starts with its start time as incarnation, so a restart beats
 * every claim about its previous life.
 */
export interface MemberDigest {
  id: string;
  url: string;
  incarnation: number;
  state: MemberState;
  /** The member's disk is (nearly) full: it takes no new copies until it has room again. */
  full?: boolean;
  /** The member is being drained: it owns nothing any more and hands its copies over. */
  leaving?: boolean;
}

export interface GossipMessage {
  from: string;
  members: MemberDigest[];
}

/** The answer of a replica that has received and fsync'd a temp copy, before it becomes visible. */
export interface PreparedUpload {
  token: string;
  sha256: string;
  size: number;
}

export interface CommitRequest {
  token: string;
  meta: FileMeta;
  heldFor: string | null;
}

export interface LocalListing {
  records: FileRecord[];
  /** True when the node had more records past the last one returned. */
  truncated: boolean;
}

export interface NodeStatus {
  id: string;
  url: string;
  ready: boolean;
  files: number;
  bytes: number;
  /** Delete markers kept until every owner has them and the grace period is over. */
  tombstones: number;
  diskFreeBytes: number | null;
  /** Free space is below --min-free-bytes: this node takes no new copies. */
  full: boolean;
  diskTotalBytes: number | null;
  /** Files with fewer than N copies, in the partitions this node leads. */
  underReplicatedFiles: number;
  underReplicatedPartitions: number;
  /** Bytes of missing copies this node's last repair round found and has not made yet. */
  pendingRepairBytes: number;
  /** Bytes received as repair or rebalance copies since start. */
  repairBytesReceived: number;
  copiesMade: number;
  surplusDropped: number;
  corruptFound: number;
}
