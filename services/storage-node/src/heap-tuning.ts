/**
 * V8 settings a storage node runs with, applied by re-executing the process in place (same PID,
 * same stdio, same environment) when node was started without them.
 *
 * A node streams through buffers that live for one block or one chunk. They are freed only when
 * the young generation is collected, and with V8's default semi-spaces (up to 16 MiB each on
 * 64-bit, grown under load) collections come seldom, so tens of MiB of dead buffers sat in
 * memory: 20 stalled downloads of a 24 MiB file and 20 cut uploads took a node from 57 to 159 MiB
 * of anonymous memory, against 103 MiB with 4 MiB semi-spaces (3.8 MiB of external memory was
 * live when garbage was collected at once). Smaller semi-spaces mean more frequent, cheaper
 * scavenges; `npm run bench` measures throughput with them.
 *
 * Small semi-spaces promote more short-lived objects, and V8 then let the old generation grow
 * to several times what was live before collecting it (its growing factor goes up to 4): under
 * 16 clients of 16 KiB uploads a coordinator held a 75 MiB old space with 25-35 MiB live, and
 * peaked at 213-236 MiB of RSS. --heap-growing-percent=50 caps that factor at 1.5: the same load
 * peaked at 148-167 MiB, at no cost in uploads or downloads per second that the bench could tell
 * from its noise.
 *
 * 1 MiB semi-spaces, not 4 (measured here with --trace-gc and `npm run bench -- --only
 * shoal,bare3 --rounds 3`): V8 starts a full mark-compact once the old generation's headroom
 * (limit minus size, 10 MiB on a node's ~20 MiB heap at 1.5x) is no larger than the young
 * generation's capacity. With 4 MiB semi-spaces that held all the time, and a 256 MiB upload made
 * 15-20 mark-compacts on every node (V8's helper threads took 25-35% of the cluster's CPU); with
 * 1 MiB, 1-2. The upload went from 20-27 to 13-14 ms of CPU per MiB (62-86 -> 120-126 MiB/s),
 * a 16 KiB upload costs about 10% more CPU (more of a request's objects outlive a 1 MiB young
 * generation), and the peak RSS of any node fell from 165-194 to 145-152 MiB.
 * (A growing factor of 2 also ended the mark-compacts, but at 194 MiB of RSS.)
 *
 * V8 reads the setting when its heap is made, so it must be on node's command line:
 * v8.setFlagsFromString() at run time leaves the young generation as it was. A
 * --max-semi-space-size given to node (command line or NODE_OPTIONS) wins, and so does
 * SHOAL_NO_HEAP_TUNING=1.
 */
export const NODE_HEAP_FLAGS = ['--max-semi-space-size=1', '--heap-growing-percent=50'];

export function execWithHeapFlags(): void {
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never })
    .execve;
  if (!execve || process.env.SHOAL_NO_HEAP_TUNING === '1') return;
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  if (given.some((a) => a.startsWith('--max-semi-space-size'))) return;
  execve.call(
    process,
    process.execPath,
    [process.execPath, ...NODE_HEAP_FLAGS, ...process.execArgv, ...process.argv.slice(1)],
    process.env,
  );
}
