import type { Logger } from '../../../../shared/logging';
import type { Config } from '../config';
import type { Catalog } from '../files/catalog';
import type { FileReader } from '../files/download';
import type { Membership } from '../membership/membership';
import type { PeerClient } from '../peers/peer-client';
import type { QuorumWriter } from '../replication/quorum-write';
import type { Repairer } from '../replication/repairer';
import type { Scrubber } from '../replication/scrubber';
import type { BlobStore } from '../store/blob-store';
import type { MetadataStore } from '../store/metadata';
import type { ApiKeys, LinkSigner } from './access';
import type { NodeMetrics } from './metrics';

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
  writer: QuorumWriter;
  reader: FileReader;
  catalog: Catalog;
  repairer: Repairer;
  scrubber: Scrubber;
  apiKeys: ApiKeys;
  links: LinkSigner;
  lifecycle: { ready: boolean; stopping: boolean };
}
