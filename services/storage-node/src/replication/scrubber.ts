import type { Logger } from '../../../../shared/logging';
import { BackgroundWorker } from '../../../../shared/worker';
import type { BlobStore } from '../store/blob-store';
import type { MetadataStore } from '../store/metadata';

export interface ScrubOptions {
  intervalMs: number;
  /** Read rate of a scrub pass, so it never starves client requests of the disk. */
  bytesPerSecond: number;
}

/**
 * Bitrot detection. Every `--scrub-interval-ms` each node re-reads every blob it holds at a
 * throttled rate and checks its sha256. A copy that no longer matches is quarantined (moved out
 * of blobs/, its row forgotten): it can never be served again, and anti-entropy sees the copy
 * missing and has a good one pulled from a peer.
 */
export class Scrubber {
  private readonly runner: BackgroundWorker;
  private signal: AbortSignal | undefined;
  readonly status = { passes: 0, blobsChecked: 0, corruptFound: 0, lastPassAt: null as string | null };

  constructor(
    private readonly options: ScrubOptions,
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly log: Logger,
  ) {
    this.runner = new BackgroundWorker(
      {
        name: 'scrub',
        work: async (signal) => {
          this.signal = signal;
          await this.pass();
          return 'idle';
        },
      },
      {
        firstMs: options.intervalMs,
        idleMs: options.intervalMs,
        backoffMs: options.intervalMs,
        maxBackoffMs: options.intervalMs,
      },
      log,
    );
  }

  start(): void {
    this.runner.start();
  }

  stop(): Promise<void> {
    return this.runner.stop();
  }

  async pass(): Promise<number> {
    let corrupt = 0;
    const ids = [...this.metadata.liveRecords()].map((r) => r.id);
    for (const id of ids) {
      if (this.signal?.aborted) break;
      if ((await this.check(id, this.options.bytesPerSecond)) === 'corrupt') corrupt++;
    }
    this.status.passes++;
    this.status.lastPassAt = new Date().toISOString();
    if (corrupt > 0) this.log.warn({ corrupt, checked: ids.length }, 'scrub pass found damaged copies');
    return corrupt;
  }

  /** Verifies one copy; a damaged one is quarantined at once. */
  async check(id: string, bytesPerSecond?: number): Promise<'ok' | 'corrupt' | 'missing'> {
    const verdict = await this.blobs.verify(id, bytesPerSecond);
    this.status.blobsChecked++;
    if (verdict === 'corrupt') {
      this.status.corruptFound++;
      this.log.error(
        { fileId: id },
        'copy failed its sha256 check; quarantined, a good copy will be fetched',
      );
      await this.blobs.quarantine(id);
    }
    return verdict;
  }
}
