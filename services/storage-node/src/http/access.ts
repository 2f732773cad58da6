import { stat, readFile } from 'node:fs/promises';
import { constantTimeEqual, hmacHex } from '../../../../shared/hashing';
import type { Logger } from '../../../../shared/logging';

/**
 * The API keys a node accepts: those given with --api-keys, plus those in --api-keys-file (one
 * per line or comma-separated; a Kubernetes Secret mount), re-read whenever the file changes, so
 * keys rotate without a restart.
 */
export class ApiKeys {
  private fromFile: string[] = [];
  private fileStamp = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly fixed: readonly string[],
    private readonly file: string | undefined,
    private readonly log: Logger,
  ) {}

  async start(pollMs = 2_000): Promise<void> {
    if (!this.file) return;
    await this.reload();
    this.timer = setInterval(() => void this.reload(), pollMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** True when keys are required at all. */
  get enabled(): boolean {
    return this.fixed.length > 0 || this.file !== undefined;
  }

  /** Checks a presented key against every accepted key, in time that does not depend on which is close. */
  accepts(given: string | undefined): boolean {
    let ok = false;
    for (const key of [...this.fixed, ...this.fromFile])
      ok = (given !== undefined && constantTimeEqual(given, key)) || ok;
    return ok;
  }

  private async reload(): Promise<void> {
    const file = this.file!;
    try {
      const info = await stat(file);
      const stamp = `${info.mtimeMs}:${info.size}:${info.ino}`;
      if (stamp === this.fileStamp) return;
      // One key per line or comma-separated; lines starting with # are comments (whose key it is).
      const keys = (await readFile(file, 'utf8'))
        .split('\n')
        .filter((line) => !line.trimStart().startsWith('#'))
        .flatMap((line) => line.split(','))
        .map((k) => k.trim())
        .filter((k) => k.length > 0);
      this.fileStamp = stamp;
      this.fromFile = keys;
      this.log.info({ keys: keys.length }, 'API keys loaded from file');
    } catch (err) {
      // Keep the keys we had: a Secret being swapped can vanish for a moment. Never log the keys.
      this.log.warn(
        { err: (err as Error).message },
        'could not read the API keys file; keeping the previous keys',
      );
    }
  }
}

/**
 * Signed download links: `GET /files/<id>?expires=<unix s>&sig=<hex>` works without an API key
 * until it expires. The signature is an HMAC over method, path and expiry with a key derived from
 * the cluster secret, so any node can check a link made by any other; changing any part of the
 * link breaks it.
 */
export class LinkSigner {
  private readonly key: string;

  constructor(clusterSecret: string | undefined) {
    this.key = hmacHex(clusterSecret ?? 'insecure-cluster', 'shoal-download-links-v1');
  }

  sign(fileId: string, expiresAt: number): string {
    return hmacHex(this.key, `GET\n/files/${fileId}\n${expiresAt}`);
  }

  verify(fileId: string, expires: string, sig: string, now: number = Date.now()): 'ok' | 'expired' | 'bad' {
    if (!/^\d{1,12}$/.test(expires) || !/^[0-9a-f]{64}$/.test(sig)) return 'bad';
    if (!constantTimeEqual(sig, this.sign(fileId, Number(expires)))) return 'bad';
    return Number(expires) * 1000 < now ? 'expired' : 'ok';
  }
}
