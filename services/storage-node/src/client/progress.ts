import { SingleBar } from 'cli-progress';
import { formatBytes, printable } from './format';

/** What a transfer reports as bytes move. */
export interface Progress {
  advance(bytes: number): void;
  /** Draws the final state and gives the line back to the terminal. */
  stop(): void;
}

const SILENT: Progress = { advance: () => undefined, stop: () => undefined };

/** How far back the transfer rate looks: long enough to be steady, short enough to follow changes. */
const RATE_WINDOW_MS = 5_000;
const LABEL_WIDTH = 24;

/**
 * A progress bar (bytes, rate, ETA) on stderr when stderr is a terminal and progress is wanted;
 * otherwise nothing at all, so logs and pipes never receive cursor-control codes.
 */
export function startProgress(label: string, totalBytes: number, wanted: boolean): Progress {
  if (!wanted || !process.stderr.isTTY) return SILENT;
  const bar = new SingleBar({
    stream: process.stderr,
    format: '{label} {bar} {percentage}% | {done} / {size} | {rate} | ETA {eta_formatted}',
    barsize: 25,
    barCompleteChar: '\u2588',
    barIncompleteChar: '\u2591',
    hideCursor: false,
    // cli-progress would otherwise take over SIGINT and leave Ctrl-C unable to stop a transfer;
    // the command's own handler stops the bar and cleans up.
    gracefulExit: false,
    etaBuffer: 50,
    fps: 10,
  });
  const samples: Array<[number, number]> = [[Date.now(), 0]];
  let done = 0;
  const payload = (): Record<string, string> => {
    const now = Date.now();
    while (samples.length > 2 && now - (samples[1]?.[0] ?? now) > RATE_WINDOW_MS) samples.shift();
    const [t0, b0] = samples[0] ?? [now, 0];
    const seconds = (now - t0) / 1000;
    const rate = seconds > 0.2 ? `${formatBytes((done - b0) / seconds)}/s` : '-';
    return { done: formatBytes(done), size: formatBytes(totalBytes), rate };
  };
  bar.start(totalBytes, 0, { label: fit(printable(label)), ...payload() });
  let lastSample = 0;
  return {
    advance(bytes: number) {
      done += bytes;
      const now = Date.now();
      if (now - lastSample >= 200) {
        samples.push([now, done]);
        lastSample = now;
      }
      bar.update(done, payload());
    },
    stop() {
      bar.update(done, payload());
      bar.stop();
    },
  };
}

function fit(label: string): string {
  const chars = [...label];
  if (chars.length <= LABEL_WIDTH) return label.padEnd(LABEL_WIDTH);
  return chars.slice(0, LABEL_WIDTH - 1).join('') + '\u2026';
}
