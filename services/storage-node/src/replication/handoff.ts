import { errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import type { FileMeta } from '../../../../shared/protocol';
import type { Membership } from '../membership/membership';
import type { Peer } from '../peers/peer';
import { copyTo } from './anti-entropy';
import type { Nodes } from './nodes';

/**
 * Hinted handoff at write time: an upload acknowledged with fewer than N copies (a home member
 * failed mid-stream) gets its missing copies at once from the next members in placement order,
 * each recording which home member it holds the copy for. Anti-entropy later moves the copy to
 * the home member when it is back, and drops the stand-in's.
 */
export async function handOff(
  meta: FileMeta,
  holders: readonly string[],
  membership: Membership,
  nodes: Nodes,
  log: Logger,
): Promise<void> {
  const { order, home } = membership.placement().place(meta.id);
  const live = new Map(nodes.live().map((p) => [p.id, p]));
  const missingHomes = home.filter((id) => !holders.includes(id));
  const standIns = order.filter((id) => !home.includes(id) && !holders.includes(id));
  const from = holders.flatMap((id) => (live.has(id) ? [live.get(id)!] : []));
  for (const missing of missingHomes) {
    while (standIns.length > 0) {
      const to: Peer | undefined = live.get(standIns.shift()!);
      if (!to) continue;
      try {
        await copyTo(to, meta, from, missing);
        log.info(
          { fileId: meta.id, peer: to.id, heldFor: missing },
          'stand-in took the copy of a home member',
        );
        break;
      } catch (err) {
        log.debug({ fileId: meta.id, peer: to.id, err: errorText(err) }, 'stand-in could not take the copy');
      }
    }
  }
}
