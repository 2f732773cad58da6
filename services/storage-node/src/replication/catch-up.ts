import type { Logger } from '../../../../shared/logging';
import type { BlobStore } from '../store/blob-store';
import type { MetadataStore } from '../store/metadata';
import type { Nodes } from './nodes';
import { errorText } from '../../../../shared/errors';

const LAST_ALIVE_KEY = 'last_alive_at';
/** Allowance for clocks that disagree between nodes. */
const CLOCK_SKEW_MS = 60_000;
const PAGE = 1000;

/** Records, every few seconds, that this node was up: the start of what it may miss if it stops now. */
export function recordAlive(metadata: MetadataStore, now: Date = new Date()): void {
  metadata.setSetting(LAST_ALIVE_KEY, now.toISOString());
}

/**
 * Before a returning node serves reads, it asks its peers for the deletes made while it was
 * away and applies them, so it never serves a file that was deleted in the meantime (anti-entropy
 * would remove it too, but only after a round). Uploads it missed need no such haste: reads
 * find those files on the other copies, and repair brings them here.
 */
export async function catchUpDeletes(
  metadata: MetadataStore,
  blobs: BlobStore,
  nodes: Nodes,
  log: Logger,
): Promise<number> {
  const lastAlive = metadata.getSetting(LAST_ALIVE_KEY);
  if (!lastAlive) return 0;
  const since = new Date(Date.parse(lastAlive) - CLOCK_SKEW_MS).toISOString();
  const peersToAsk = nodes.live().filter((m) => m.id !== nodes.self.id);
  let applied = 0;
  await Promise.all(
    peersToAsk.map(async (m) => {
      try {
        let from = since;
        for (;;) {
          const page = await m.tombstonesSince(from, PAGE);
          for (const t of page) {
            if ((await blobs.delete(t.id, t.deletedAt)).wasLive) applied++;
          }
          if (page.length < PAGE) break;
          from = page[page.length - 1]!.deletedAt;
        }
      } catch (err) {
        log.warn({ peer: m.id, err: errorText(err) }, 'could not catch up on deletes from a peer');
      }
    }),
  );
  if (applied > 0) log.info({ applied, since }, 'applied deletes made while this node was away');
  return applied;
}
