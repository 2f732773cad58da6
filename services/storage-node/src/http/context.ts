import type { Logger } from '../../../../shared/logging';
import type { Config } from '../config';
import type { Catalog } from '../files/catalog';
import type { FileReader } from '../files/download';
import type { Membership } from '../membership/membership';
import type { PeerClient } from '../peers/peer-client';
import type { ClusterSecrets } from '../peers/cluster-secrets';
import type { UploadGuard } from '../files/upload-guard';
import type { QuorumWriter } from '../replication/quorum-write';
import type { AntiEntropy } from '../replication/anti-entropy';
import type { CopyFetcher } from '../replication/copy-fetcher';
import type { LocalNode } from '../replication/local-node';
import type { Nodes } from '../replication/nodes';
import type { Scrubber } from '../replication/scrubber';
import type { BlobStore } from '../store/blob-store';
import type { MetadataStore } from '../store/metadata';
import type { Registry } from '../registry/registry';
import type { RegistrySync } from '../registry/registry-sync';
import type { S3Buckets } from '../s3/buckets';
import type { S3Keys } from '../s3/keys';
import type { ApiKeys, LinkSigner } from './access';
import type { NodeMetrics } from './metrics';

/** Whether this node takes public requests and new copies, and if not, why. */
export interface Lifecycle {
  /** Started, caught up with its peers, not stopping, and the data dir takes writes. */
  readonly ready: boolean;
  /** Why this node does not serve its own rows yet (see CatchUp), or null once it is caught up. */
  catchingUp: string | null;
  stopping: boolean;
  /** Why the data dir takes no writes (read-only file system, vanished), or null while it does. */
  diskFault: string | null;
  /** Requests being answered (method and route, no query: it may hold a signature), by start time. */
  readonly inFlight: Map<object, { request: string; since: number }>;
}

/** Why a node that is not ready is not, for people (no paths: /readyz answers anyone). */
export function notReadyReason(lifecycle: Lifecycle): string {
  if (lifecycle.stopping) return 'this node is shutting down';
  if (lifecycle.diskFault !== null)
    return `this node's data dir does not take writes: ${lifecycle.diskFault}`;
  return lifecycle.catchingUp ?? 'this node is starting';
}

/** Everything the HTTP layer may call, built once by main.ts. */
export interface NodeContext {
  config: Config;
  selfId: string;
  selfUrl: string;
  log: Logger;
  metrics: NodeMetrics;
  membership: Membership;
  metadata: MetadataStore;
  blobs: BlobStore;
  peers: PeerClient;
  /** Every member as a Peer, this node included. */
  nodes: Nodes;
  /** This node's own storage as a Peer: what the internal routes serve. */
  local: LocalNode;
  fetcher: CopyFetcher;
  writer: QuorumWriter;
  reader: FileReader;
  catalog: Catalog;
  antiEntropy: AntiEntropy;
  scrubber: Scrubber;
  apiKeys: ApiKeys;
  links: LinkSigner;
  secrets: ClusterSecrets;
  uploads: UploadGuard;
  lifecycle: Lifecycle;
  /** The cluster-wide state every node keeps whole: S3 keys, buckets. */
  registry: Registry;
  registrySync: RegistrySync;
  s3Keys: S3Keys;
  s3Buckets: S3Buckets;
}
