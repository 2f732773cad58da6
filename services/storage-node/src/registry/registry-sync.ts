import type { RegistryEntry } from '../../../../shared/protocol';
import type { Logger } from '../../../../shared/logging';
import type { WorkResult, Worker } from '../../../../shared/worker';
import { errorText } from '../../../../shared/errors';
import type { Registry } from './registry';

/** What the sync needs of the cluster: the members to talk to and the calls to make. */
export interface RegistryPeers {
  /** Peer URLs of the members not declared dead, this node excluded. */
  others(): string[];
  sync(url: string, digest: string): Promise<{ digest: string; entries?: RegistryEntry[] }>;
  merge(url: string, entries: RegistryEntry[], timeoutMs?: number): Promise<number>;
}

/** How long a write waits for the members it is pushed to before answering without them. */
const PUSH_TIMEOUT_MS = 2_000;

/**
 * Spreads the registry. A write is pushed to every live member at once, so a key made on one
 * node works on the others a moment later; a member that misses the push (down, partitioned,
 * slow) is caught up by the anti-entropy below, as is a node that restarts with an old copy.
 *
 * Anti-entropy, one step per period: compare this node's digest with a random member's. When
 * they differ the member answers with all its entries; this node takes the newer ones, and if it
 * still differs (it holds writes the member lacks) hands the member all of its own. The state is
 * small (keys and buckets), so whole-state exchange is simpler than any finer diff, and it runs
 * only when something differs.
 */
export class RegistrySync implements Worker {
  readonly name = 'registry-sync';

  constructor(
    private readonly registry: Registry,
    private readonly peers: RegistryPeers,
    private readonly log: Logger,
  ) {}

  /** Pushes an entry written here to every live member; resolves once each has answered or timed out. */
  async spread(entry: RegistryEntry): Promise<{ reached: number; of: number }> {
    const others = this.peers.others();
    const results = await Promise.allSettled(
      others.map((url) => this.peers.merge(url, [entry], PUSH_TIMEOUT_MS)),
    );
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length > 0)
      this.log.info(
        {
          kind: entry.kind,
          missed: failed.length,
          err: errorText((failed[0] as PromiseRejectedResult).reason),
        },
        'registry write not pushed to every member; the sync will bring it',
      );
    return { reached: others.length - failed.length, of: others.length };
  }

  async work(): Promise<WorkResult> {
    const others = this.peers.others();
    if (others.length === 0) return 'idle';
    const url = others[Math.floor(Math.random() * others.length)]!;
    try {
      const answer = await this.peers.sync(url, this.registry.digest());
      if (answer.digest === this.registry.digest()) return 'idle';
      if (answer.entries) {
        const taken = this.registry.merge(answer.entries);
        if (taken.length > 0)
          this.log.info({ peer: url, entries: taken.length }, 'registry caught up from a member');
      }
      if (this.registry.digest() !== answer.digest) await this.peers.merge(url, this.registry.all());
    } catch (err) {
      // One member out of reach (suspect, restarting) is no reason to slow the sync with the others.
      this.log.debug({ peer: url, err: errorText(err) }, 'registry sync with a member failed');
    }
    return 'idle';
  }

  /** The other half of a member's sync step: its digest in, this node's entries out if they differ. */
  answer(digest: string): { digest: string; entries?: RegistryEntry[] } {
    const mine = this.registry.digest();
    return mine === digest ? { digest: mine } : { digest: mine, entries: this.registry.all() };
  }
}
