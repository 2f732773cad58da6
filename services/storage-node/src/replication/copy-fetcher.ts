import { pipeline } from 'node:stream';
import { errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import type { CopyResult, FileMeta } from '../../../../shared/protocol';
import type { CopyToStore } from '../peers/peer';
import { RateLimiter, Throttle, discard } from '../../../../shared/streams';
import type { PeerClient } from '../peers/peer-client';
import type { BlobStore } from '../store/blob-store';
import type { MetadataStore } from '../store/metadata';

/**
 * The receiving side of repair, rebalance, handoff and read repair: fetches a copy of a file from
 * one of its holders and stores it here, verified against the sha256 the caller names. One rate
 * budget (--repair-bytes-per-sec) covers every copy this node receives, however many run at once;
 * concurrent requests for the same file share one transfer. Pulls start only once the start-up
 * check has set aside the blobs it could not explain, so that one of them with the right bytes
 * is adopted from this disk rather than written over from the network.
 */
export class CopyFetcher {
  private readonly pulling = new Map<string, Promise<number>>();
  private readonly rate: RateLimiter;
  /** Bytes received as repair or rebalance copies since start. */
  bytesReceived = 0;

  constructor(
    bytesPerSecond: number,
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly client: PeerClient,
    private readonly log: Logger,
    /** Settles when BlobStore.setAsideUnexplained has run (or failed). */
    private readonly startupWalk: Promise<void> = Promise.resolve(),
  ) {
    this.rate = new RateLimiter(bytesPerSecond);
  }

  /** Fetches and stores a copy from the first of `sources` (member URLs) that has it; returns its bytes, 0 if already here. */
  pull(meta: FileMeta, sources: string[], heldFor: string | null = null): Promise<number> {
    const existing = this.pulling.get(meta.id);
    if (existing) return existing;
    const work = this.pullOnce(meta, sources, heldFor).finally(() => this.pulling.delete(meta.id));
    this.pulling.set(meta.id, work);
    return work;
  }

  /**
   * Stores small copies a leader handed over with their bytes, checked one by one (BlobStore),
   * within the same rate budget as pulls: the batch waits for its bytes' turn first.
   */
  async storeCopies(copies: CopyToStore[]): Promise<CopyResult[]> {
    const bytes = copies.reduce((sum, c) => sum + c.data.length, 0);
    const waitMs = this.rate.take(bytes);
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    const results = await this.blobs.storeCopies(copies);
    this.bytesReceived += bytes;
    return results;
  }

  private async pullOnce(meta: FileMeta, sources: string[], heldFor: string | null): Promise<number> {
    await this.startupWalk;
    const own = this.metadata.get(meta.id);
    if (own?.state === 'live' && own.sha256 === meta.sha256) return 0;
    // A copy set aside here (a lost database, a start-up with blobs it could not account for)
    // with exactly these bytes comes back from the local disk, not the network.
    const adopted = await this.blobs.adoptQuarantined(meta, heldFor);
    if (adopted !== undefined) {
      this.log.info({ fileId: meta.id, bytes: adopted }, 'adopted a quarantined copy');
      return adopted;
    }
    let lastError: unknown = new Error('no source to copy from');
    for (const url of sources) {
      try {
        const res = await this.client.openBlob(url, meta.id, { method: 'GET' });
        if (!res) continue;
        if (res.status !== 200 || res.record.sha256 !== meta.sha256) {
          discard(res.body);
          continue;
        }
        let bytes = 0;
        res.body.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          this.bytesReceived += chunk.length;
        });
        // pipeline(), so a failed store also releases the peer's response and its connection.
        await this.blobs.storeCopy(
          pipeline(res.body, new Throttle(this.rate), () => undefined),
          meta,
          heldFor,
        );
        return bytes;
      } catch (err) {
        lastError = err;
        this.log.debug({ fileId: meta.id, peer: url, err: errorText(err) }, 'pull from source failed');
      }
    }
    throw lastError;
  }
}
