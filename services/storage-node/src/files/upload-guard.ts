import type { Request, Response } from 'express';
import { ShoalError, errorBody } from '../../../../shared/errors';

export interface UploadGuardOptions {
  /** Uploads one node takes at once. */
  maxUploads: number;
  /** Uploads one client address may have under way on one node. */
  maxUploadsPerClient: number;
  /** Below this average over a window (bytes/s), while the node is reading, an upload is cut off. */
  minBytesPerSec: number;
  /** No upload lasts longer than this, however fast. */
  deadlineMs: number;
  /** The window the minimum rate is averaged over; also the grace an upload gets at its start. */
  rateWindowMs?: number;
}

export const RATE_WINDOW_MS = 30_000;

/**
 * What one client may hold of a node's uploads. Each upload holds a request, a parser and a
 * stream to every replica for as long as its client keeps sending; without bounds, a client
 * trickling bytes could hold them all. So:
 * - at most `maxUploads` at once per node and `maxUploadsPerClient` per client address: past
 *   either, `503 too_many_uploads` with `Retry-After`, before a byte is read;
 * - an upload that sends less than `minBytesPerSec` on average over 30 s is cut off with `408`,
 *   except while the node itself holds it back (backpressure from a slow replica is not the
 *   client's fault);
 * - none lasts longer than `deadlineMs`.
 * A cut-off upload gets its answer, then loses its connection: its prepared copies are aborted as
 * for any client that hangs up mid-upload, and nothing is visible.
 */
export class UploadGuard {
  private active = 0;
  private readonly perClient = new Map<string, number>();

  constructor(private readonly options: UploadGuardOptions) {}

  /** Uploads under way now. */
  get count(): number {
    return this.active;
  }

  /** Admits an upload or throws `too_many_uploads`; watches it until its response closes. */
  admit(req: Request, res: Response): void {
    const client = req.socket.remoteAddress ?? 'unknown';
    const mine = this.perClient.get(client) ?? 0;
    if (this.active >= this.options.maxUploads || mine >= this.options.maxUploadsPerClient) {
      res.setHeader('Retry-After', '5');
      throw new ShoalError(
        'too_many_uploads',
        this.active >= this.options.maxUploads
          ? `this node takes at most ${this.options.maxUploads} uploads at once; retry shortly`
          : `at most ${this.options.maxUploadsPerClient} uploads at once from one client; retry shortly`,
      );
    }
    this.active++;
    this.perClient.set(client, mine + 1);
    const stopWatching = this.watch(req, res);
    res.once('close', () => {
      stopWatching();
      this.active--;
      const left = (this.perClient.get(client) ?? 1) - 1;
      if (left > 0) this.perClient.set(client, left);
      else this.perClient.delete(client);
    });
  }

  private watch(req: Request, res: Response): () => void {
    const { minBytesPerSec, deadlineMs, rateWindowMs = RATE_WINDOW_MS } = this.options;
    const checkMs = rateWindowMs / 6;
    const started = Date.now();
    // Counted on the socket: a 'data' listener on the request would start it flowing before
    // multer pipes it anywhere, and lose what it read.
    const socket = req.socket;
    const received = (): number => socket.bytesRead;
    // Bytes at each check, and whether the node held the body back since the last one.
    const marks: Array<{ at: number; received: number }> = [{ at: started, received: received() }];
    let heldBack = false;
    const onPause = (): void => {
      heldBack = true;
    };
    req.on('pause', onPause);
    const timer = setInterval(() => {
      if (req.complete) return stop();
      const now = Date.now();
      if (now - started > deadlineMs) {
        stop();
        return failUpload(
          req,
          res,
          new ShoalError('request_timeout', `uploads must end within ${Math.round(deadlineMs / 1000)} s`),
        );
      }
      if (heldBack || req.isPaused()) {
        // The node was not reading: this window says nothing about the client.
        heldBack = false;
        marks.length = 0;
      }
      marks.push({ at: now, received: received() });
      // Keep the newest mark at least a window old: the rate is averaged from there.
      while (marks.length > 1 && now - marks[1]!.at >= rateWindowMs) marks.shift();
      const first = marks[0]!;
      if (
        now - first.at >= rateWindowMs - checkMs / 2 &&
        (received() - first.received) / ((now - first.at) / 1000) < minBytesPerSec
      ) {
        stop();
        failUpload(
          req,
          res,
          new ShoalError(
            'request_timeout',
            `the upload sent less than ${minBytesPerSec} bytes/s for ${rateWindowMs / 1000} s`,
          ),
        );
      }
    }, checkMs);
    timer.unref();
    const stop = (): void => {
      clearInterval(timer);
      req.off('pause', onPause);
    };
    return stop;
  }
}

/**
 * Ends an upload under way: the client gets `err` as the answer, then its connection is closed,
 * and with it the body. The parser and the replicas then see a client that hung up mid-upload,
 * and the prepared copies are aborted as for any upload cut short: nothing becomes visible.
 */
function failUpload(req: Request, res: Response, err: ShoalError): void {
  const close = (): void => {
    req.socket.destroy();
  };
  if (res.headersSent) return close();
  res.setHeader('Connection', 'close');
  res.once('finish', close);
  // A client that reads nothing does not get the answer flushed: it loses the connection anyway.
  setTimeout(close, 5_000).unref();
  res.status(err.httpStatus).json(errorBody(err.code, err.message));
}
