import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { placeFile } from '../../services/storage-node/src/placement/placement';
import { uploadFromDisk, writeRandomFile } from '../helpers/client';
import { TestCluster, getJson, repoRoot, type ClusterOptions } from '../helpers/cluster';
import { attempt, fmtMiB, ownChildPids, round, sleep, type Outcome } from './bench-kit';

/**
 * `node dist/test/bench/heal-bench.js`: how fast a real local Shoal cluster heals itself.
 *
 *  1. Node loss. 4 nodes (N=3, W=2); ~200 MiB uploaded and fully replicated; one node is
 *     SIGKILLed. Measured: kill -> declared dead (first survivor, and all survivors), kill -> full
 *     redundancy again, and repair throughput = bytes the survivors received as repair copies /
 *     (full redundancy - first declared dead).
 *  2. Scale-out. 3 nodes; ~150 MiB uploaded and fully replicated; a 4th node is added. Measured:
 *     time until the cluster settles, the bytes the new node received, and how that compares with
 *     the ideal move (its fair share, 3 x total / 4), and the surplus copies dropped.
 *
 * Everything runs on 127.0.0.1 under one temp dir (the nodes' data dirs included), removed on
 * every way out. Figures go to stdout and `.bench/heal.json`; progress to stderr.
 *
 * Options: --only node-loss | scale-out   run one scenario
 */

const MiB = 1024 * 1024;
const REPLICAS = 3;
const WRITE_QUORUM = 2;
const FAILURE_TIMEOUT_MS = 3_000;
const GOSSIP_INTERVAL_MS = 200;
const REPAIR_INTERVAL_MS = 1_000;
const REPAIR_BYTES_PER_SEC = 200 * MiB;

const LOSS = { nodes: 4, files: 50, fileBytes: 4 * MiB, victim: 1 };
const SCALE = { nodes: 3, files: 75, fileBytes: 2 * MiB };
const UPLOAD_CONCURRENCY = 4;

/** How often the cluster is asked for its state while the clock runs. */
const DEATH_POLL_MS = 50;
const STATE_POLL_MS = 200;
/** Scale-out has settled once the new node's file count has not moved for this long (3 repair rounds). */
const STABLE_MS = 3 * REPAIR_INTERVAL_MS;
/** Before this, a new node still holding nothing is taken as "not started yet", not as settled. */
const EMPTY_GRACE_MS = 20_000;

const REPLICATED_TIMEOUT_MS = 60_000;
const DEAD_TIMEOUT_MS = 30_000;
const HEAL_TIMEOUT_MS = 90_000;
/** The whole run is cut off (and cleaned up) after this long, whatever state it is in. */
const WATCHDOG_MS = 240_000;

/** Set on SIGINT/SIGTERM/watchdog: failures after that are the cleanup's doing, not the cluster's. */
let abandoned = false;

const clusterOptions = (nodes: number): ClusterOptions => ({
  nodes,
  replicas: REPLICAS,
  writeQuorum: WRITE_QUORUM,
  failureTimeoutMs: FAILURE_TIMEOUT_MS,
  gossipIntervalMs: GOSSIP_INTERVAL_MS,
  args: [
    '--repair-interval-ms',
    String(REPAIR_INTERVAL_MS),
    '--repair-bytes-per-sec',
    String(REPAIR_BYTES_PER_SEC),
  ],
});

// ---------------------------------------------------------------------------------------------
// What the cluster reports

interface ClusterMember {
  id: string;
  url: string;
  state: string;
  /** The figures below are missing for dead members and for those that did not answer in time. */
  files?: number;
  bytes?: number;
  repairBytesReceived?: number;
  copiesMade?: number;
  surplusDropped?: number;
  diskFreeBytes?: number | null;
}

interface ClusterView {
  self: string;
  underReplicatedFiles: number;
  pendingRepairBytes: number;
  nodes: ClusterMember[];
}

interface ListedFile {
  id: string;
  size: number;
  replicas: string[];
}

interface Uploaded {
  id: string;
  size: number;
}

async function clusterView(url: string): Promise<ClusterView | undefined> {
  return getJson<ClusterView>(`${url}/cluster`);
}

/** Every file in the cluster, page by page; undefined if any page failed. */
async function listAll(url: string): Promise<ListedFile[] | undefined> {
  const all: ListedFile[] = [];
  let after = '';
  for (;;) {
    const query = after ? `&after=${encodeURIComponent(after)}` : '';
    const page = await getJson<{ files: ListedFile[]; next: string | null }>(
      `${url}/files?limit=1000${query}`,
    );
    if (!page) return undefined;
    all.push(...page.files);
    if (!page.next) return all;
    after = page.next;
  }
}

interface Redundancy {
  /** Files listed with exactly N holders, all of them among `live`. */
  complete: number;
  listed: number;
  underReplicatedFiles: number | undefined;
  pendingRepairBytes: number | undefined;
  view: ClusterView | undefined;
  /** Every live node answered with its figures, so the totals above cover the whole cluster. */
  allAnswered: boolean;
  full: boolean;
}

/**
 * Whether every uploaded file is held by exactly N of the `live` nodes and no node reports
 * under-replicated files. A node that does not answer is left out of both the listing and the
 * totals of `GET /cluster`, so the answer counts only when every live node answered.
 */
async function checkRedundancy(
  viewer: string,
  files: readonly Uploaded[],
  live: readonly string[],
): Promise<Redundancy> {
  const [listed, view] = await Promise.all([listAll(viewer), clusterView(viewer)]);
  const byId = new Map((listed ?? []).map((f) => [f.id, f]));
  const complete = files.filter((f) => {
    const holders = byId.get(f.id)?.replicas ?? [];
    return holders.length === REPLICAS && holders.every((h) => live.includes(h));
  }).length;
  const allAnswered =
    view !== undefined &&
    live.every((id) => view.nodes.some((n) => n.id === id && n.state === 'alive' && n.files !== undefined));
  return {
    complete,
    listed: listed?.length ?? 0,
    underReplicatedFiles: view?.underReplicatedFiles,
    pendingRepairBytes: view?.pendingRepairBytes,
    view,
    allAnswered,
    full:
      listed !== undefined &&
      listed.length === files.length &&
      complete === files.length &&
      allAnswered &&
      view.underReplicatedFiles === 0,
  };
}

function sumOf(
  view: ClusterView | undefined,
  ids: readonly string[],
  pick: (m: ClusterMember) => number | undefined,
): number {
  return (view?.nodes ?? []).filter((n) => ids.includes(n.id)).reduce((sum, n) => sum + (pick(n) ?? 0), 0);
}

function member(view: ClusterView | undefined, id: string): ClusterMember | undefined {
  return view?.nodes.find((n) => n.id === id);
}

// ---------------------------------------------------------------------------------------------
// Steps shared by both scenarios

async function writeFiles(dir: string, count: number, bytes: number): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const paths: string[] = [];
  for (let i = 0; i < count; i++) {
    const path = join(dir, `f-${String(i).padStart(3, '0')}.bin`);
    await writeRandomFile(path, bytes);
    paths.push(path);
  }
  return paths;
}

/** Streams every file from disk, UPLOAD_CONCURRENCY at a time, spread over the running nodes. */
async function uploadAll(
  cluster: TestCluster,
  paths: readonly string[],
  bytes: number,
): Promise<{ files: Uploaded[]; seconds: number }> {
  const urls = cluster.running().map((n) => n.url);
  const files: Uploaded[] = [];
  let next = 0;
  const start = performance.now();
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const i = next++;
      const url = urls[i % urls.length]!;
      const res = await uploadFromDisk(url, paths[i]!, `heal-${i}.bin`);
      if (res.status !== 201 || res.body.size !== bytes) {
        throw new Error(`upload ${i} to ${url}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
      }
      files.push({ id: res.body.id, size: res.body.size });
    }
  };
  await Promise.all(Array.from({ length: UPLOAD_CONCURRENCY }, worker));
  return { files, seconds: (performance.now() - start) / 1000 };
}

/**
 * Starts a cluster, runs `fn` on it and stops it again. On failure the nodes' last log lines go to
 * stderr first, since stopAll removes the logs.
 */
async function withCluster<T>(
  nodes: number,
  track: (c: TestCluster) => void,
  fn: (c: TestCluster) => Promise<T>,
): Promise<T> {
  const cluster = await TestCluster.start(clusterOptions(nodes));
  track(cluster);
  try {
    return await fn(cluster);
  } catch (error) {
    for (let i = 0; i < cluster.nodes.length && !abandoned; i++) {
      const tail = cluster.log(i).trimEnd().split('\n').slice(-15).join('\n');
      process.stderr.write(`\n--- last lines of ${cluster.node(i).id}'s log ---\n${tail}\n`);
    }
    throw error;
  } finally {
    await cluster.stopAll();
  }
}

/** Polls until every file has N holders among `live`; returns the last state seen. */
async function waitForRedundancy(
  viewer: string,
  files: readonly Uploaded[],
  live: readonly string[],
  timeoutMs: number,
  onSample?: (r: Redundancy) => void,
): Promise<Redundancy> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const r = await checkRedundancy(viewer, files, live);
    onSample?.(r);
    if (r.full) return r;
    if (performance.now() > deadline) {
      throw new Error(
        `no full redundancy within ${timeoutMs / 1000} s: ${r.complete}/${files.length} files with ` +
          `${REPLICAS} live holders, ${r.listed} listed, underReplicatedFiles ${String(r.underReplicatedFiles)}, ` +
          `every live node answered: ${r.allAnswered}`,
      );
    }
    await sleep(STATE_POLL_MS);
  }
}

interface Sample {
  /** Milliseconds since the event the scenario times from (the kill, or the new node's start). */
  ms: number;
  completeFiles: number;
  underReplicatedFiles: number | null;
  pendingRepairBytes: number | null;
  repairBytesReceived: number;
  newNodeFiles?: number | null;
}

/**
 * From the last poll before any repair byte arrived to the first poll that saw them all: the copy
 * work alone, without the wait for failure detection and the next repair round.
 */
function copyWindow(samples: readonly Sample[]): { from: number; to: number } | undefined {
  const first = samples[0];
  const last = samples[samples.length - 1];
  if (!first || !last || last.repairBytesReceived === first.repairBytesReceived) return undefined;
  const growing = samples.findIndex((x) => x.repairBytesReceived > first.repairBytesReceived);
  const from = samples[Math.max(0, growing - 1)]!.ms;
  const to = samples.find((x) => x.repairBytesReceived === last.repairBytesReceived)!.ms;
  return to > from ? { from, to } : undefined;
}

// ---------------------------------------------------------------------------------------------
// Scenario 1: node loss

interface NodeLossResult {
  files: number;
  totalBytes: number;
  uploadMBps: number;
  victim: string;
  /** Bytes of the files the victim held: what repair has to copy again. */
  lostCopyBytes: number;
  msToFirstDeclaredDead: number;
  msToAllDeclaredDead: number;
  /** Kill -> every file listed with N live holders (before the counters have caught up). */
  msToAllCopiesListed: number | null;
  msToFullRedundancy: number;
  repairSeconds: number;
  repairBytesReceived: number;
  repairBytesReceivedByNode: Record<string, number>;
  copiesMade: number;
  repairMBps: number;
  /** The same bytes over only the polls during which they arrived (no detection or round wait). */
  copyWindowMs: { from: number; to: number } | null;
  copyWindowMBps: number | null;
  repairLimitMBps: number;
  samples: Sample[];
}

async function nodeLoss(root: string, track: (c: TestCluster) => void): Promise<NodeLossResult> {
  const totalBytes = LOSS.files * LOSS.fileBytes;
  log(`node loss: writing ${LOSS.files} random files of ${fmtMiB(LOSS.fileBytes)}`);
  const paths = await writeFiles(join(root, 'loss-files'), LOSS.files, LOSS.fileBytes);
  log(`node loss: starting ${LOSS.nodes} nodes`);
  return withCluster(LOSS.nodes, track, async (cluster) => {
    const ids = cluster.nodes.map((n) => n.id);
    const viewer = cluster.url(0);
    const victim = cluster.node(LOSS.victim);
    const survivors = cluster.nodes.filter((n) => n !== victim);
    const survivorIds = survivors.map((n) => n.id);

    log(`node loss: uploading ${fmtMiB(totalBytes)}`);
    const { files, seconds: uploadSeconds } = await uploadAll(cluster, paths, LOSS.fileBytes);
    log(`node loss: waiting for ${REPLICAS} copies of every file`);
    await waitForRedundancy(viewer, files, ids, REPLICATED_TIMEOUT_MS);

    const before = await clusterView(viewer);
    const listedBefore = await listAll(viewer);
    if (!before || !listedBefore) throw new Error('no cluster view or listing before the kill');
    const lostCopyBytes = listedBefore
      .filter((f) => f.replicas.includes(victim.id))
      .reduce((sum, f) => sum + f.size, 0);
    const receivedBefore = new Map(
      survivorIds.map((id) => [id, member(before, id)?.repairBytesReceived ?? 0]),
    );
    const copiesBefore = sumOf(before, survivorIds, (m) => m.copiesMade);

    log(`node loss: SIGKILL ${victim.id}`);
    const killedAt = performance.now();
    await cluster.kill(LOSS.victim, 'SIGKILL');

    // Each survivor is watched on its own: the first to declare the victim dead starts repair.
    const deadAt = new Map<string, number>();
    await Promise.all(
      survivors.map(async (n) => {
        const deadline = killedAt + DEAD_TIMEOUT_MS;
        while (performance.now() < deadline) {
          const view = await clusterView(n.url);
          if (member(view, victim.id)?.state === 'dead') {
            deadAt.set(n.id, performance.now() - killedAt);
            return;
          }
          await sleep(DEATH_POLL_MS);
        }
        throw new Error(`${n.id} did not declare ${victim.id} dead within ${DEAD_TIMEOUT_MS / 1000} s`);
      }),
    );
    const firstDead = Math.min(...deadAt.values());
    const allDead = Math.max(...deadAt.values());
    log(`node loss: declared dead after ${round(firstDead, 0)} ms (all survivors: ${round(allDead, 0)} ms)`);

    const samples: Sample[] = [];
    const healed = await waitForRedundancy(viewer, files, survivorIds, HEAL_TIMEOUT_MS, (r) =>
      samples.push({
        ms: round(performance.now() - killedAt, 0),
        completeFiles: r.complete,
        underReplicatedFiles: r.underReplicatedFiles ?? null,
        pendingRepairBytes: r.pendingRepairBytes ?? null,
        repairBytesReceived: sumOf(r.view, survivorIds, (m) => m.repairBytesReceived),
      }),
    );
    const fullAt = performance.now() - killedAt;
    log(`node loss: full redundancy after ${round(fullAt, 0)} ms`);

    const after = healed.view;
    const byNode: Record<string, number> = {};
    for (const id of survivorIds) {
      byNode[id] = (member(after, id)?.repairBytesReceived ?? 0) - (receivedBefore.get(id) ?? 0);
    }
    const received = Object.values(byNode).reduce((a, b) => a + b, 0);
    const repairSeconds = (fullAt - firstDead) / 1000;
    const window = copyWindow(samples);
    return {
      files: files.length,
      totalBytes,
      uploadMBps: round(totalBytes / 1e6 / uploadSeconds, 1),
      victim: victim.id,
      lostCopyBytes,
      msToFirstDeclaredDead: round(firstDead, 0),
      msToAllDeclaredDead: round(allDead, 0),
      msToAllCopiesListed: samples.find((x) => x.completeFiles === files.length)?.ms ?? null,
      msToFullRedundancy: round(fullAt, 0),
      repairSeconds: round(repairSeconds, 3),
      repairBytesReceived: received,
      repairBytesReceivedByNode: byNode,
      copiesMade: sumOf(after, survivorIds, (m) => m.copiesMade) - copiesBefore,
      repairMBps: round(received / 1e6 / repairSeconds, 1),
      copyWindowMs: window ?? null,
      copyWindowMBps: window ? round(received / 1e6 / ((window.to - window.from) / 1000), 1) : null,
      repairLimitMBps: round(REPAIR_BYTES_PER_SEC / 1e6, 1),
      samples,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Scenario 2: scale-out

interface ScaleOutResult {
  files: number;
  totalBytes: number;
  uploadMBps: number;
  newNode: string;
  msToNewNodeReady: number;
  /** From the new node's start until the state that then held for STABLE_MS first held. */
  msToSettled: number;
  newNodeBytesReceived: number;
  newNodeFiles: number;
  newNodeBytesHeld: number;
  /** The new node's fair share: total copy bytes / (n + 1). */
  idealBytes: number;
  movedOverIdeal: number;
  /** The copies placement gives the new node for these very ids (rendezvous hashing is not exactly fair). */
  placementShareBytes: number;
  movedOverPlacementShare: number;
  /** Bytes the new node received / (settled - ready). */
  rebalanceMBps: number;
  /** Repair bytes received by the old nodes meanwhile (ideally none). */
  oldNodesBytesReceived: number;
  copiesMade: number;
  surplusDropped: number;
  filesPerNode: Record<string, number>;
  samples: Sample[];
}

async function scaleOut(root: string, track: (c: TestCluster) => void): Promise<ScaleOutResult> {
  const totalBytes = SCALE.files * SCALE.fileBytes;
  log(`scale-out: writing ${SCALE.files} random files of ${fmtMiB(SCALE.fileBytes)}`);
  const paths = await writeFiles(join(root, 'scale-files'), SCALE.files, SCALE.fileBytes);
  log(`scale-out: starting ${SCALE.nodes} nodes`);
  return withCluster(SCALE.nodes, track, async (cluster) => {
    const viewer = cluster.url(0);
    const oldIds = cluster.nodes.map((n) => n.id);

    log(`scale-out: uploading ${fmtMiB(totalBytes)}`);
    const { files, seconds: uploadSeconds } = await uploadAll(cluster, paths, SCALE.fileBytes);
    log(`scale-out: waiting for ${REPLICAS} copies of every file`);
    await waitForRedundancy(viewer, files, oldIds, REPLICATED_TIMEOUT_MS);
    const before = await clusterView(viewer);
    if (!before) throw new Error('no cluster view before adding a node');

    log('scale-out: adding a node');
    const startedAt = performance.now();
    const added = await cluster.addNode();
    const readyAt = performance.now() - startedAt;
    const allIds = [...oldIds, added.id];

    const samples: Sample[] = [];
    let stableSince: number | undefined;
    let stableFiles: number | undefined;
    let settled: { at: number; state: Redundancy } | undefined;
    const deadline = startedAt + HEAL_TIMEOUT_MS;
    while (!settled) {
      const r = await checkRedundancy(viewer, files, allIds);
      const now = performance.now();
      const newFiles = member(r.view, added.id)?.files;
      samples.push({
        ms: round(now - startedAt, 0),
        completeFiles: r.complete,
        underReplicatedFiles: r.underReplicatedFiles ?? null,
        pendingRepairBytes: r.pendingRepairBytes ?? null,
        repairBytesReceived: sumOf(r.view, allIds, (m) => m.repairBytesReceived),
        newNodeFiles: newFiles ?? null,
      });
      const plausible = (newFiles ?? 0) > 0 || now - startedAt > EMPTY_GRACE_MS;
      if (r.full && plausible && newFiles !== undefined) {
        if (stableSince === undefined || newFiles !== stableFiles) {
          stableSince = now;
          stableFiles = newFiles;
        }
        if (now - stableSince >= STABLE_MS) {
          settled = { at: stableSince - startedAt, state: r };
          break;
        }
      } else stableSince = undefined;
      if (now > deadline) {
        throw new Error(
          `scale-out did not settle within ${HEAL_TIMEOUT_MS / 1000} s: ${r.complete}/${files.length} files ` +
            `with exactly ${REPLICAS} holders, underReplicatedFiles ${String(r.underReplicatedFiles)}, ` +
            `${added.id} holds ${String(newFiles)} files`,
        );
      }
      await sleep(STATE_POLL_MS);
    }
    const settledAt = settled.at;
    log(`scale-out: settled ${round(settledAt, 0)} ms after the new node started`);

    const after = settled.state.view;
    const newMember = member(after, added.id);
    const received = newMember?.repairBytesReceived ?? 0;
    const idealBytes = (REPLICAS * totalBytes) / allIds.length;
    const placementShareBytes = files
      .filter((f) => placeFile(f.id, allIds, REPLICAS).home.includes(added.id))
      .reduce((sum, f) => sum + f.size, 0);
    const delta = (pick: (m: ClusterMember) => number | undefined, ids: readonly string[]): number =>
      sumOf(after, ids, pick) - sumOf(before, ids, pick);
    return {
      files: files.length,
      totalBytes,
      uploadMBps: round(totalBytes / 1e6 / uploadSeconds, 1),
      newNode: added.id,
      msToNewNodeReady: round(readyAt, 0),
      msToSettled: round(settledAt, 0),
      newNodeBytesReceived: received,
      newNodeFiles: newMember?.files ?? 0,
      newNodeBytesHeld: newMember?.bytes ?? 0,
      idealBytes,
      movedOverIdeal: round(received / idealBytes, 3),
      placementShareBytes,
      movedOverPlacementShare: placementShareBytes === 0 ? 0 : round(received / placementShareBytes, 3),
      rebalanceMBps: round(received / 1e6 / ((settledAt - readyAt) / 1000), 1),
      oldNodesBytesReceived: delta((m) => m.repairBytesReceived, oldIds),
      copiesMade: delta((m) => m.copiesMade, allIds),
      surplusDropped: delta((m) => m.surplusDropped, allIds),
      filesPerNode: Object.fromEntries(allIds.map((id) => [id, member(after, id)?.files ?? 0])),
      samples,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Output

function renderReport(
  loss: Outcome<NodeLossResult> | undefined,
  scale: Outcome<ScaleOutResult> | undefined,
  loadAtStart: number,
): string {
  const out: string[] = [
    '',
    `Shoal self-healing bench, ${new Date().toISOString()}: local nodes on 127.0.0.1, N=${REPLICAS}, W=${WRITE_QUORUM}, ` +
      `failure timeout ${FAILURE_TIMEOUT_MS} ms, gossip ${GOSSIP_INTERVAL_MS} ms, repair interval ${REPAIR_INTERVAL_MS} ms, ` +
      `repair limit ${fmtMiB(REPAIR_BYTES_PER_SEC)}/s; ${cpus().length} CPUs, Node ${process.version}, ` +
      `load average ${round(loadAtStart, 1)} at start, ${round(loadavg()[0] ?? 0, 1)} at end`,
    '',
  ];
  if (loss) {
    out.push(
      `1. Node loss (${LOSS.nodes} nodes, ${LOSS.files} x ${fmtMiB(LOSS.fileBytes)}, SIGKILL one node)`,
    );
    if (!loss.ok) out.push(`   FAILED: ${loss.error}`);
    else {
      const r = loss.value;
      out.push(
        table([
          ['figure', 'value'],
          ['data uploaded', `${fmtMiB(r.totalBytes)} (${r.uploadMBps} MB/s with all copies)`],
          ['node killed', r.victim],
          ['kill -> declared dead (first survivor)', `${r.msToFirstDeclaredDead} ms`],
          ['kill -> declared dead (every survivor)', `${r.msToAllDeclaredDead} ms`],
          ['kill -> every file listed with 3 live holders', `${r.msToAllCopiesListed ?? 'n/a'} ms`],
          ['kill -> full redundancy (underReplicatedFiles 0 too)', `${r.msToFullRedundancy} ms`],
          ['declared dead -> full redundancy', `${round(r.repairSeconds * 1000, 0)} ms`],
          ['copies to make (files the killed node held)', fmtMiB(r.lostCopyBytes)],
          [
            'repair bytes received by survivors',
            `${fmtMiB(r.repairBytesReceived)} (${ratio(r.repairBytesReceived, r.lostCopyBytes) ?? 'n/a'}x of what was lost)`,
          ],
          ['copies made', String(r.copiesMade)],
          ['repair throughput (declared dead -> full redundancy)', `${r.repairMBps} MB/s`],
          [
            'repair throughput (while bytes were arriving)',
            r.copyWindowMs
              ? `${r.copyWindowMBps} MB/s (${r.copyWindowMs.from}-${r.copyWindowMs.to} ms after the kill)`
              : 'n/a',
          ],
          [
            'configured repair limit (per node)',
            `${r.repairLimitMBps} MB/s (${fmtMiB(REPAIR_BYTES_PER_SEC)}/s)`,
          ],
        ]),
      );
    }
    out.push('');
  }
  if (scale) {
    out.push(
      `2. Scale-out (${SCALE.nodes} -> ${SCALE.nodes + 1} nodes, ${SCALE.files} x ${fmtMiB(SCALE.fileBytes)})`,
    );
    if (!scale.ok) out.push(`   FAILED: ${scale.error}`);
    else {
      const r = scale.value;
      out.push(
        table([
          ['figure', 'value'],
          ['data uploaded', `${fmtMiB(r.totalBytes)} (${r.uploadMBps} MB/s with all copies)`],
          ['new node start -> ready', `${r.msToNewNodeReady} ms`],
          ['new node start -> settled', `${r.msToSettled} ms`],
          ['bytes moved to the new node', fmtMiB(r.newNodeBytesReceived)],
          ['ideal: 3 x total / 4', fmtMiB(r.idealBytes)],
          ['moved / ideal', `${r.movedOverIdeal.toFixed(2)}x`],
          ["placement's share for these ids", fmtMiB(r.placementShareBytes)],
          ["moved / placement's share", `${r.movedOverPlacementShare.toFixed(2)}x`],
          ['rebalance throughput (ready -> settled)', `${r.rebalanceMBps} MB/s`],
          ['new node holds', `${r.newNodeFiles} files, ${fmtMiB(r.newNodeBytesHeld)}`],
          ['repair bytes received by old nodes', fmtMiB(r.oldNodesBytesReceived)],
          ['copies made / surplus copies dropped', `${r.copiesMade} / ${r.surplusDropped}`],
          [
            'files per node after',
            Object.entries(r.filesPerNode)
              .map(([id, n]) => `${id} ${n}`)
              .join(', '),
          ],
        ]),
      );
    }
    out.push('');
  }
  out.push(
    'Notes:',
    `- "Full redundancy": every uploaded file listed by GET /files with exactly ${REPLICAS} holders, all live, every live node answering GET /cluster, and underReplicatedFiles 0; polled every ${STATE_POLL_MS} ms, so times are late by up to that much plus one poll.`,
    '- Repair throughput divides the growth of repairBytesReceived on the survivors by the time from the first survivor declaring the node dead to full redundancy.',
    `- Scale-out "settled": full redundancy over the 4 nodes and the new node's file count unchanged for ${STABLE_MS / 1000} s; the time is when that stretch began.`,
    "- The placement's share is what rendezvous hashing assigns the new node for these very file ids (sum of the sizes of files whose first 3 of the 4 members include it); with only a few dozen files it strays from the fair 3/4 by chance.",
    '- MB/s is 10^6 bytes per second; MiB is 2^20 bytes.',
  );
  return out.join('\n') + '\n';
}

function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  const line = (row: string[]): string =>
    ('   ' + row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('   ')).trimEnd();
  return [
    line(rows[0] ?? []),
    '   ' + widths.map((w) => '-'.repeat(w)).join('   '),
    ...rows.slice(1).map(line),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Running it

function parseArgs(argv: string[]): { lossOnly: boolean; scaleOnly: boolean } {
  if (argv.length === 0) return { lossOnly: false, scaleOnly: false };
  if (argv.length === 2 && argv[0] === '--only' && (argv[1] === 'node-loss' || argv[1] === 'scale-out')) {
    return { lossOnly: argv[1] === 'node-loss', scaleOnly: argv[1] === 'scale-out' };
  }
  throw new Error(`usage: heal-bench.js [--only node-loss|scale-out]; got ${argv.join(' ')}`);
}

function killOwnChildrenNow(): void {
  for (const pid of ownChildPids()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const loadAtStart = loadavg()[0] ?? 0;
  const root = mkdtempSync(join(tmpdir(), 'shoal-heal-bench-'));
  const clusters: TestCluster[] = [];
  let cleanedUp = false;

  const cleanup = async (): Promise<void> => {
    if (cleanedUp) return;
    cleanedUp = true;
    await Promise.all(clusters.map((c) => c.stopAll().catch(() => undefined)));
    killOwnChildrenNow();
    rmSync(root, { recursive: true, force: true });
  };
  process.once('exit', () => {
    killOwnChildrenNow();
    rmSync(root, { recursive: true, force: true });
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      abandoned = true;
      log(`${signal}: cleaning up`);
      void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
  const watchdog = setTimeout(() => {
    abandoned = true;
    log(`still running after ${WATCHDOG_MS / 1000} s: giving up`);
    void cleanup().finally(() => process.exit(1));
  }, WATCHDOG_MS);
  watchdog.unref();

  const track = (cluster: TestCluster): void => {
    clusters.push(cluster);
  };

  try {
    // Every temp file of the run, the clusters' data dirs included (TestCluster uses tmpdir()),
    // lives under `root`, so one rm removes them all whatever happened.
    process.env.TMPDIR = root;
    const loss = options.scaleOnly ? undefined : await attempt(() => nodeLoss(root, track));
    rmSync(join(root, 'loss-files'), { recursive: true, force: true });
    const scale = options.lossOnly ? undefined : await attempt(() => scaleOut(root, track));

    if (abandoned) return 1;
    process.stdout.write(renderReport(loss, scale, loadAtStart));
    const outDir = join(repoRoot(), '.bench');
    mkdirSync(outDir, { recursive: true });
    const json = {
      startedAt: startedAt.toISOString(),
      durationSeconds: round((Date.now() - startedAt.getTime()) / 1000, 1),
      machine: {
        cpus: cpus().length,
        node: process.version,
        loadAverage1m: { atStart: round(loadAtStart, 2), atEnd: round(loadavg()[0] ?? 0, 2) },
      },
      config: {
        replicas: REPLICAS,
        writeQuorum: WRITE_QUORUM,
        failureTimeoutMs: FAILURE_TIMEOUT_MS,
        gossipIntervalMs: GOSSIP_INTERVAL_MS,
        repairIntervalMs: REPAIR_INTERVAL_MS,
        repairBytesPerSec: REPAIR_BYTES_PER_SEC,
        statePollMs: STATE_POLL_MS,
        stableMs: STABLE_MS,
        nodeLoss: LOSS,
        scaleOut: SCALE,
      },
      nodeLoss: loss ?? null,
      scaleOut: scale ?? null,
    };
    writeFileSync(join(outDir, 'heal.json'), JSON.stringify(json, null, 2) + '\n');
    log(`figures written to ${join(outDir, 'heal.json')}`);
    return loss?.ok === false || scale?.ok === false ? 1 : 0;
  } finally {
    clearTimeout(watchdog);
    await cleanup();
  }
}

function ratio(a: number, b: number): string | undefined {
  return b === 0 ? undefined : (a / b).toFixed(2);
}

function log(message: string): void {
  process.stderr.write(`[heal-bench] ${message}\n`);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = 1;
  },
);
