import { once } from 'node:events';

/** Writes to stdout and waits when the reader is slower than we are (a pager, a slow pipe). */
export async function writeOut(text: string): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain');
}

export function writeJson(value: unknown): Promise<void> {
  return writeOut(JSON.stringify(value, null, 2) + '\n');
}
