import { lookup } from 'node:dns/promises';
import type { Logger } from '../../../../shared/logging';
import { systemClock, type Clock, type SeedSource } from './swim';

/** Resolves a name to every address it has (A and AAAA), like dns.lookup with `all: true`. */
export type Resolver = (name: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

const systemResolver: Resolver = (name) => lookup(name, { all: true });

export interface DiscoveryOptions {
  /** This node's own advertised URL: never a seed. */
  selfUrl: string;
  /** --seeds, as given. */
  seeds: readonly string[];
  /** --discovery-dns: a name whose addresses are the members (a Kubernetes headless Service). */
  dnsName: string | undefined;
  /** Scheme and port assumed for addresses found through DNS. */
  scheme?: 'http' | 'https';
  port: number;
  /** How often the name is looked up again (relookupIntervalMs). */
  relookupMs: number;
}

/**
 * How often --discovery-dns is looked up again: a newcomer's pod may not be listed yet at its first
 * lookup, so members find each other at the latest one re-lookup later (see settledAt).
 */
export function relookupIntervalMs(gossipIntervalMs: number): number {
  return Math.max(gossipIntervalMs * 5, 5_000);
}

/**
 * Where a node looks for the cluster when no member leads there: the configured seeds and the
 * addresses --discovery-dns resolves to, looked up again every relookupMs (the answer changes as
 * pods come and go), minus every URL that turned out to reach this very node (a headless
 * Service lists every pod, this one included, under an address it cannot tell from the others).
 */
export class Discovery implements SeedSource {
  private dnsSeeds: string[] = [];
  private lastLookup: number | undefined;
  private readonly ownUrls = new Set<string>();

  constructor(
    private readonly options: DiscoveryOptions,
    private readonly log: Logger,
    private readonly resolve: Resolver = systemResolver,
    private readonly clock: Clock = systemClock,
  ) {}

  async seeds(): Promise<string[]> {
    const candidates = new Set([...this.options.seeds, ...(await this.fromDns())]);
    return [...candidates].filter((url) => url !== this.options.selfUrl && !this.ownUrls.has(url));
  }

  markSelf(url: string): void {
    this.ownUrls.add(url);
  }

  /** The last answer for the DNS name, looked up again once it is relookupMs old. */
  private async fromDns(): Promise<string[]> {
    const name = this.options.dnsName;
    if (!name) return [];
    const now = this.clock.now();
    if (this.lastLookup !== undefined && now - this.lastLookup < this.options.relookupMs)
      return this.dnsSeeds;
    this.lastLookup = now;
    try {
      const records = await this.resolve(name);
      const scheme = this.options.scheme ?? 'http';
      this.dnsSeeds = records.map((r) =>
        r.family === 6
          ? `${scheme}://[${r.address}]:${this.options.port}`
          : `${scheme}://${r.address}:${this.options.port}`,
      );
    } catch (err) {
      // Keep the last answer: a failed lookup says nothing about who left.
      this.log.debug({ err: (err as Error).message, name }, 'discovery lookup failed');
    }
    return this.dnsSeeds;
  }
}
