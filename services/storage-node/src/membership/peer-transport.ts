import type { PeerClient } from '../peers/peer-client';
import type { SwimTransport } from './swim';

/**
 * SWIM's transport over the node-to-node client: an exchange is POST /internal/v1/gossip, a
 * ping-req is POST /internal/v1/probe. The detector knows nothing of HTTP, signing or undici.
 */
export function peerTransport(peers: Pick<PeerClient, 'gossip' | 'probe'>): SwimTransport {
  return {
    exchange: (url, message, timeoutMs) => peers.gossip(url, message, timeoutMs),
    probeVia: (helperUrl, targetUrl, timeoutMs) => peers.probe(helperUrl, targetUrl, timeoutMs),
  };
}
