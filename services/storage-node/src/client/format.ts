/** Rendering helpers for human-readable output: sizes, times and aligned tables. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '-';
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

/** An ISO time to the second, in UTC, as the server's createdAt is: `2025-01-31 12:34:56Z`. */
export function formatTime(iso: string): string {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return printable(iso);
  return new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
}

/**
 * Text from the server (file names, messages) made safe for a terminal: control characters,
 * which could move the cursor or rewrite the screen, become `?`.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?');
}

/** East Asian wide characters and emoji, which take two terminal columns. */
const WIDE =
  /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{1f300}-\u{1faff}\u{20000}-\u{3fffd}]/u;
const COMBINING = /\p{M}/u;

/** Width of a string in terminal columns, near enough for aligning a table. */
function displayWidth(text: string): number {
  let width = 0;
  for (const ch of text) {
    if (COMBINING.test(ch)) continue;
    width += WIDE.test(ch) ? 2 : 1;
  }
  return width;
}

export type Align = 'left' | 'right';

/**
 * Lays out rows under a header with two spaces between columns. The last column is never padded,
 * so long names do not push trailing blanks onto every line.
 */
export function renderTable(header: string[], rows: string[][], align: Align[] = []): string {
  const all = [header, ...rows];
  const widths = header.map((_h, col) => Math.max(...all.map((row) => displayWidth(row[col] ?? ''))));
  const lines = all.map((row) =>
    row
      .map((cell, col) => {
        if (col === row.length - 1) return cell;
        const pad = ' '.repeat(Math.max(0, (widths[col] ?? 0) - displayWidth(cell)));
        return align[col] === 'right' ? pad + cell : cell + pad;
      })
      .join('  ')
      .trimEnd(),
  );
  return lines.join('\n') + '\n';
}

/** A key/value block: `label  value` lines with the labels aligned. */
export function renderFields(fields: Array<[string, string]>): string {
  const width = Math.max(...fields.map(([label]) => label.length));
  return fields.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n') + '\n';
}
