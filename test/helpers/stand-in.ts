import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A plain HTTP server standing in for a peer that behaves in one particular way (slow, or of an
 * older version): listens on a free loopback port and answers its base URL.
 */
export async function listenOnLoopback(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Closes a stand-in server, cutting the connections a client still keeps alive. */
export async function closeStandIn(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}
