import { formatBytes, formatTime, printable, renderFields, renderTable } from './format';
import type { ClusterMember, ShoalClient, StoredFile } from './http-client';
import { writeJson, writeOut } from './output';

/** The contract leaves the largest page to the server; every Shoal node serves this many. */
export const DEFAULT_PAGE_SIZE = 1000;
/** Ids are up to 64 characters; the ones Shoal mints are 26. */
const ID_COLUMN = 26;

export interface ListOptions {
  json: boolean;
  /** Start after this id. */
  after?: string;
  /** Stop after this many files. */
  max?: number;
  /** Files asked for per request. */
  pageSize?: number;
}

const LIST_HEADER =
  ['ID'.padEnd(ID_COLUMN), 'SIZE'.padStart(9), 'CREATED'.padEnd(20), 'COPIES', 'NAME'].join('  ') + '\n';

function listRow(file: StoredFile): string {
  const copies = Array.isArray(file.replicas) ? String(file.replicas.length) : '-';
  return [
    file.id.padEnd(ID_COLUMN),
    formatBytes(file.size).padStart(9),
    formatTime(file.createdAt).padEnd(20),
    copies.padStart(6),
    printable(file.name),
  ].join('  ');
}

/**
 * Pages through `GET /files` and prints each page as it arrives, so a listing of any length
 * needs one page of memory: a table, or one JSON array written element by element.
 */
export async function listFiles(client: ShoalClient, options: ListOptions): Promise<void> {
  let after = options.after ?? null;
  let remaining = options.max ?? Infinity;
  let count = 0;
  let bytes = 0;
  let started = false;
  while (remaining > 0) {
    const page = await client.list(after, Math.min(options.pageSize ?? DEFAULT_PAGE_SIZE, remaining));
    const files = page.files.slice(0, remaining);
    // The header waits for the first answer, so a failure prints nothing on stdout.
    let text = started ? '' : options.json ? '[' : LIST_HEADER;
    started = true;
    for (const file of files) {
      text += options.json ? (count === 0 ? '\n' : ',\n') + JSON.stringify(file) : listRow(file) + '\n';
      count++;
      bytes += file.size;
    }
    await writeOut(text);
    remaining -= files.length;
    const last = files[files.length - 1];
    // An empty page or a cursor that does not move would loop for ever.
    if (page.next === null || page.next === undefined || last === undefined || page.next === after) break;
    after = page.next;
  }
  if (!started) await writeOut(options.json ? '[' : LIST_HEADER);
  if (options.json) await writeOut(count === 0 ? ']\n' : '\n]\n');
  else await writeOut(`${count} ${count === 1 ? 'file' : 'files'}, ${formatBytes(bytes)}\n`);
}

export async function showInfo(client: ShoalClient, id: string, json: boolean): Promise<void> {
  const info = await client.info(id);
  if (json) return writeJson(info);
  const copies = Array.isArray(info.replicas) ? info.replicas : [];
  const ok = copies.filter((c) => c.state === 'ok').length;
  await writeOut(
    renderFields([
      ['id', info.id],
      ['name', printable(info.name)],
      ['size', `${formatBytes(info.size)} (${info.size} bytes)`],
      ['sha256', info.sha256],
      ['type', printable(info.contentType)],
      ['created', formatTime(info.createdAt)],
      ['copies', `${ok} of ${copies.length} ok`],
    ]) +
      '\n' +
      renderTable(
        ['NODE', 'URL', 'STATE'],
        copies.map((c) => [printable(c.nodeId), printable(c.url), printable(c.state)]),
      ),
  );
}

export async function removeFile(client: ShoalClient, id: string, json: boolean): Promise<void> {
  await client.remove(id);
  if (json) await writeJson({ id, deleted: true });
  else await writeOut(`deleted ${id}\n`);
}

function figure(value: number | null | undefined, render: (n: number) => string): string {
  return typeof value === 'number' ? render(value) : '-';
}

export async function showStatus(client: ShoalClient, json: boolean): Promise<void> {
  const view = await client.cluster();
  if (json) return writeJson(view);
  const byState = new Map<string, number>();
  for (const n of view.nodes) byState.set(n.state, (byState.get(n.state) ?? 0) + 1);
  const states = [...byState].map(([state, n]) => `${n} ${printable(state)}`).join(', ');
  const row = (n: ClusterMember): string[] => [
    (n.id === view.self ? '* ' : '  ') + printable(n.id),
    printable(n.state),
    figure(n.files, String),
    figure(n.bytes, formatBytes),
    figure(n.diskFreeBytes, formatBytes),
    printable(n.url),
  ];
  const fields: Array<[string, string]> = [
    ['nodes', `${view.nodes.length} (${states})`],
    ['replicas', `N=${view.replicas}, write quorum W=${view.writeQuorum}`],
  ];
  if (typeof view.underReplicatedFiles === 'number')
    fields.push(['under-replicated files', String(view.underReplicatedFiles)]);
  if (typeof view.pendingRepairBytes === 'number')
    fields.push(['pending repair', formatBytes(view.pendingRepairBytes)]);
  await writeOut(
    renderFields(fields) +
      '\n' +
      renderTable(['  NODE', 'STATE', 'FILES', 'BYTES', 'DISK FREE', 'URL'], view.nodes.map(row), [
        'left',
        'left',
        'right',
        'right',
        'right',
      ]) +
      `(* answered: ${printable(view.self)})\n`,
  );
}
