import { statfs } from 'node:fs/promises';
import type { NodeStatus } from '../../../../shared/protocol';
import type { NodeContext } from './context';

/** What this node reports about itself to peers and to `GET /cluster`. */
export async function nodeStatus(ctx: NodeContext): Promise<NodeStatus> {
  const counts = ctx.metadata.counts();
  const repair = ctx.antiEntropy.snapshot();
  let diskFreeBytes: number | null = null;
  let diskTotalBytes: number | null = null;
  try {
    const fs = await statfs(ctx.config.dataDir);
    diskFreeBytes = fs.bavail * fs.bsize;
    diskTotalBytes = fs.blocks * fs.bsize;
  } catch {
    // The data dir vanished or the platform has no statfs: report unknown, not zero.
  }
  return {
    id: ctx.selfId,
    url: ctx.selfUrl,
    ready: ctx.lifecycle.ready,
    files: counts.files,
    bytes: counts.bytes,
    tombstones: counts.tombstones,
    diskFreeBytes,
    diskTotalBytes,
    full: ctx.membership.isFull(ctx.selfId),
    underReplicatedFiles: repair.underReplicatedFiles,
    underReplicatedPartitions: repair.underReplicatedPartitions,
    pendingRepairBytes: repair.pendingBytes,
    repairBytesReceived: repair.bytesReceived,
    copiesMade: repair.copiesMade,
    surplusDropped: repair.surplusDropped,
    corruptFound: ctx.scrubber.status.corruptFound,
  };
}

/** Sets the gauges and counters that mirror state kept elsewhere, just before a scrape. */
export async function refreshMetrics(ctx: NodeContext): Promise<void> {
  const status = await nodeStatus(ctx);
  const m = ctx.metrics;
  m.files.set(status.files);
  m.fileBytes.set(status.bytes);
  m.underReplicated.set(status.underReplicatedFiles);
  m.repairPendingBytes.set(status.pendingRepairBytes);
  if (status.diskFreeBytes !== null) m.diskFree.set(status.diskFreeBytes);
  m.quarantined.set(ctx.blobs.quarantineCount());
  m.syncCounters({
    repairBytes: status.repairBytesReceived,
    copiesMade: status.copiesMade,
    surplusDropped: status.surplusDropped,
    corruptFound: status.corruptFound,
  });
  const states = { alive: 0, suspect: 0, dead: 0 };
  for (const member of ctx.membership.view()) states[member.state]++;
  for (const [state, n] of Object.entries(states)) m.members.set({ state }, n);
}
