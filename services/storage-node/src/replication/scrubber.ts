import { stat } from 'node:fs/promises';
import { errorText } from '../../../../shared/errors';
import type { Logger } from '../../../../shared/logging';
import { BackgroundWorker, type WorkResult } from '../../../../shared/worker';
import type { BlobStore } from '../store/blob-store';
import type { MetadataStore } from '../store/metadata';

export interface ScrubOptions {
  intervalMs: number;
  /** Read rate of a scrub pass, so it never starves client requests of the disk. */
  bytesPerSecond: number;
  /** Pause between two presence walks over every live copy. */
  presenceIntervalMs?: number;
}

/** What can be wrong with a copy this node holds. */
export type CopyFault = 'corrupt' | 'missing' | 'unreadable';

const PAGE = 500;
/** Blob stats a presence walk makes per second at most: a million copies are checked in about 3 minutes. */
const PRESENCE_STATS_PER_SECOND = 5_000;

/**
 * A node never counts a copy it cannot read. Two background walks over this node's live copies
 * find those it must stop counting:
 *
 *  - the presence walk (every few seconds, at a bounded rate of stats) notices blobs that vanished
 *    or changed size under a running node: a bad sector, an fsck, an operator's rm;
 *  - the scrub (every --scrub-interval-ms, at a quarter of the repair bandwidth) re-reads every
 *    blob and checks each block's checksum and the whole sha256, for bit rot.
 *
 * Reads report what they meet too (LocalNode). A faulty copy is taken out of service at once:
 * moved to quarantine/ when anything is left of it, its live row forgotten, so this node's
 * anti-entropy digest changes, the partition's leader sees the copy missing and has a good one
 * made, and no surplus copy elsewhere is dropped against a copy that is not there.
 */
export class Scrubber {
  private readonly scrub: BackgroundWorker;
  private readonly presence: BackgroundWorker;
  private signal: AbortSignal | undefined;
  private presenceCursor = '';
  readonly status = {
    passes: 0,
    blobsChecked: 0,
    corruptFound: 0,
    missingFound: 0,
    lastPassAt: null as string | null,
  };

  constructor(
    private readonly options: ScrubOptions,
    private readonly metadata: MetadataStore,
    private readonly blobs: BlobStore,
    private readonly log: Logger,
  ) {
    this.scrub = new BackgroundWorker(
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
    const presenceMs = options.presenceIntervalMs ?? 10_000;
    this.presence = new BackgroundWorker(
      { name: 'presence', work: (signal) => this.presenceStep(signal) },
      { firstMs: presenceMs, idleMs: presenceMs, backoffMs: presenceMs },
      log,
    );
  }

  start(): void {
    this.scrub.start();
    this.presence.start();
  }

  async stop(): Promise<void> {
    await Promise.all([this.scrub.stop(), this.presence.stop()]);
  }

  /** One scrub pass over every live copy; returns how many were taken out of service. */
  async pass(): Promise<number> {
    let faulty = 0;
    let checked = 0;
    let after = '';
    for (;;) {
      const page = this.metadata.liveAfter(after, PAGE);
      for (const { id } of page) {
        if (this.signal?.aborted) return faulty;
        checked++;
        if ((await this.check(id, this.options.bytesPerSecond)) !== 'ok') faulty++;
      }
      if (page.length < PAGE) break;
      after = page[page.length - 1]!.id;
    }
    this.status.passes++;
    this.status.lastPassAt = new Date().toISOString();
    if (faulty > 0) this.log.warn({ faulty, checked }, 'scrub pass took faulty copies out of service');
    return faulty;
  }

  /** Verifies one copy; a faulty one is taken out of service at once. */
  async check(id: string, bytesPerSecond?: number): Promise<'ok' | CopyFault> {
    let verdict: 'ok' | CopyFault;
    try {
      verdict = await this.blobs.verify(id, bytesPerSecond);
    } catch (err) {
      this.log.warn({ fileId: id, err: errorText(err) }, 'could not verify a copy');
      return 'ok';
    }
    this.status.blobsChecked++;
    if (verdict !== 'ok') await this.takeOutOfService(id, verdict);
    return verdict;
  }

  /**
   * Stops counting a copy this node cannot serve: moves what is left of it to quarantine/ and
   * forgets its live row, so anti-entropy has a good copy made. A tombstone is never touched.
   */
  async takeOutOfService(id: string, fault: CopyFault, detail?: string): Promise<void> {
    if (this.metadata.get(id)?.state !== 'live') return;
    if (fault === 'corrupt') this.status.corruptFound++;
    else this.status.missingFound++;
    this.log.error(
      { fileId: id, fault, err: detail },
      fault === 'corrupt'
        ? 'copy failed its checksums; quarantined, a good copy will be made'
        : `copy is ${fault}; no longer counted, a good copy will be made`,
    );
    await this.blobs.quarantine(id);
  }

  /** One page of the presence walk; idle once it has been round every live copy. */
  private async presenceStep(signal: AbortSignal): Promise<WorkResult> {
    const page = this.metadata.liveAfter(this.presenceCursor, PAGE);
    const started = Date.now();
    for (const { id, size, inline } of page) {
      if (signal.aborted) return 'idle';
      // A small copy lives in SQLite with its row: nothing on disk to vanish apart from it.
      if (inline) continue;
      const actual = await stat(this.blobs.blobPath(id)).then(
        (s) => (s.isFile() ? s.size : -1),
        () => -1,
      );
      if (actual !== size)
        await this.takeOutOfService(id, 'missing', `blob size ${actual}, expected ${size}`);
    }
    if (page.length < PAGE) {
      this.presenceCursor = '';
      return 'idle';
    }
    this.presenceCursor = page[page.length - 1]!.id;
    const budgetMs = (page.length / PRESENCE_STATS_PER_SECOND) * 1000;
    return { throttleMs: Math.max(0, budgetMs - (Date.now() - started)) };
  }
}
