import type { Membership } from '../membership/membership';
import type { Peer } from '../peers/peer';
import type { PeerClient } from '../peers/peer-client';
import { RemotePeer } from '../peers/remote-peer';

/**
 * The one place that knows which member is this node: it hands out this node's LocalNode for its
 * own id and a RemotePeer for every other member, so no caller branches on "is this me?".
 */
export class Nodes {
  private readonly remotes = new Map<string, RemotePeer>();

  constructor(
    readonly self: Peer,
    private readonly membership: Membership,
    private readonly client: PeerClient,
  ) {}

  /** The member with this id, or undefined when its URL is not known (not a member). */
  get(id: string): Peer | undefined {
    if (id === this.self.id) return this.self;
    const url = this.membership.urlOf(id);
    if (url === undefined) return undefined;
    let peer = this.remotes.get(id);
    // A member that came back at another address (a rescheduled pod) gets a new RemotePeer.
    if (!peer || peer.url !== url) {
      peer = new RemotePeer(id, url, this.client);
      this.remotes.set(id, peer);
    }
    return peer;
  }

  /** Every member not declared dead, this node included (draining ones too: they hold copies). */
  live(): Peer[] {
    return this.membership
      .view()
      .filter((m) => m.state !== 'dead')
      .flatMap((m) => {
        const peer = this.get(m.id);
        return peer ? [peer] : [];
      });
  }
}
