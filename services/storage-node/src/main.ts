import { createServer, type Server } from 'node:http';
import { mkdir, open, readFile, statfs, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errorText } from '../../../shared/errors';
import { createLogger, type Logger } from '../../../shared/logging';
import { resolveNodeId, type Config } from './config';
import { Catalog } from './files/catalog';
import { FileReader } from './files/download';
import { ApiKeys, LinkSigner } from './http/access';
import { buildApp } from './http/app';
import { clientErrorHandler } from './http/error-handler';
import type { Lifecycle, NodeContext } from './http/context';
import { NodeMetrics } from './http/metrics';
import { Membership } from './membership/membership';
import { PeerClient } from './peers/peer-client';
import { QuorumWriter } from './replication/quorum-write';
import { catchUpDeletes, recordAlive } from './replication/catch-up';
import { AntiEntropy } from './replication/anti-entropy';
import { CopyFetcher } from './replication/copy-fetcher';
import { LocalNode } from './replication/local-node';
import { Nodes } from './replication/nodes';
import { Scrubber } from './replication/scrubber';
import { nodeStatus } from './http/node-status';
import { BlobStore } from './store/blob-store';
import { lockDataDir } from './store/data-dir-lock';
import { MetadataStore } from './store/metadata';

export interface RunningNode {
  ctx: NodeContext;
  server: Server;
  /** Stops taking requests, lets in-flight ones finish, closes the database. */
  stop(): Promise<void>;
}

const SHUTDOWN_GRACE_MS = 25_000;
/**
 * Largest request line plus header block a client may send (Node's own default, chosen here on
 * purpose): ample for a Bearer key, a signed link and a browser's cookies, and it bounds what one
 * connection can make the parser buffer. Larger ones get a JSON 431.
 */
const MAX_HEADER_BYTES = 16 * 1024;
const PENDING_UPLOAD_TTL_MS = 10 * 60_000;

/** Composition root: config -> parts -> listen. Nothing else builds parts. */
export async function startNode(config: Config): Promise<RunningNode> {
  const dataDir = resolve(config.dataDir);
  await mkdir(dataDir, { recursive: true });
  // Before anything in the data dir is read or changed: a second process on it stops here.
  const dataDirLock = lockDataDir(dataDir);
  const selfId = resolveNodeId(config.nodeId, await readStoredId(dataDir));
  await writeFile(join(dataDir, 'node-id'), selfId + '\n');
  const log = createLogger({ nodeId: selfId, level: config.logLevel });
  let started = false;
  const lifecycle: Lifecycle = {
    stopping: false,
    diskFault: null,
    inFlight: new Map(),
    get ready() {
      return started && !this.stopping && this.diskFault === null;
    },
  };

  const metadata = new MetadataStore(join(dataDir, 'metadata.sqlite'));
  const blobs = new BlobStore(dataDir, metadata);
  await blobs.init();
  const reconciled = await blobs.reconcile();
  if (reconciled.orphanBlobs + reconciled.missingBlobs > 0) {
    log.warn(
      reconciled,
      'start-up check: set aside blobs without a row in quarantine/, forgot rows without a blob',
    );
  }
  const peers = new PeerClient({ nodeId: selfId, secret: config.clusterSecret });
  const membership = new Membership(
    {
      selfId,
      selfUrl: config.advertiseUrl,
      seeds: config.seeds,
      discoveryDns: config.discoveryDns,
      port: config.port,
      replicas: config.replicas,
      gossipIntervalMs: config.gossipIntervalMs,
      failureTimeoutMs: config.failureTimeoutMs,
    },
    peers,
    log,
  );
  const scrubber = new Scrubber(
    {
      intervalMs: config.scrubIntervalMs,
      bytesPerSecond: Math.max(1024 * 1024, config.repairBytesPerSec / 4),
    },
    metadata,
    blobs,
    log,
  );
  const fetcher = new CopyFetcher(config.repairBytesPerSec, metadata, blobs, peers, log);
  const local = new LocalNode(
    {
      id: selfId,
      url: config.advertiseUrl,
      ready: () => lifecycle.ready,
      full: () => membership.isFull(selfId),
      isMemberUrl: (url) => membership.view().some((m) => m.url === url),
      status: () => nodeStatus(ctx),
    },
    metadata,
    blobs,
    scrubber,
    fetcher,
  );
  const nodes = new Nodes(local, membership, peers);
  const antiEntropy = new AntiEntropy(
    {
      replicas: config.replicas,
      intervalMs: config.repairIntervalMs,
      concurrency: config.repairConcurrency,
      tombstoneGraceMs: config.tombstoneGraceMs,
    },
    membership,
    nodes,
    metadata,
    fetcher,
    log,
  );
  const ctx: NodeContext = {
    config,
    selfId,
    selfUrl: config.advertiseUrl,
    log,
    metrics: new NodeMetrics(selfId),
    membership,
    metadata,
    blobs,
    peers,
    nodes,
    fetcher,
    writer: new QuorumWriter(
      { replicas: config.replicas, writeQuorum: config.writeQuorum, maxFileSize: config.maxFileSize },
      membership,
      nodes,
      log,
    ),
    reader: new FileReader(membership, nodes, fetcher, log),
    catalog: new Catalog(config.writeQuorum, membership, nodes, log),
    antiEntropy,
    scrubber,
    apiKeys: new ApiKeys(config.apiKeys, config.apiKeysFile, log),
    links: new LinkSigner(config.clusterSecret),
    lifecycle,
  };
  ctx.metrics.startupUnexplained.set({ kind: 'blob_without_row' }, reconciled.orphanBlobs);
  ctx.metrics.startupUnexplained.set({ kind: 'row_without_blob' }, reconciled.missingBlobs);
  await ctx.apiKeys.start();

  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, buildApp(ctx));
  server.on(
    'clientError',
    clientErrorHandler({
      maxHeaderBytes: MAX_HEADER_BYTES,
      log,
      onRefused: (status) => ctx.metrics.parserRefusals.inc({ status: String(status) }),
    }),
  );
  // Uploads of many GiB take longer than any fixed whole-request limit; stalls are caught by the
  // socket inactivity timeout instead. Headers must still arrive promptly.
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  server.setTimeout(120_000);

  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(config.port, config.host, () => {
      server.off('error', rej);
      res();
    });
  });
  const checkDisk = dataDirChecker(dataDir, config.minFreeBytes, lifecycle, membership, log);
  await checkDisk();
  await membership.start();
  await catchUpDeletes(metadata, blobs, nodes, log);
  recordAlive(metadata);
  antiEntropy.start();
  scrubber.start();
  let aliveStampFailing = false;
  const housekeeping = setInterval(() => {
    blobs
      .expirePending(PENDING_UPLOAD_TTL_MS)
      .catch((err: unknown) => log.warn({ err }, 'expiring temp uploads failed'));
    // A synchronous SQLite write in a timer: if the disk refuses it, throwing here would take the
    // whole process down, copies others could still read from it included. The data dir check
    // reports the cause; this only notes when the stamp stops and resumes.
    try {
      recordAlive(metadata);
      if (aliveStampFailing) log.info('recording the last-alive time works again');
      aliveStampFailing = false;
    } catch (err) {
      if (!aliveStampFailing) log.warn({ err: errorText(err) }, 'could not record the last-alive time');
      aliveStampFailing = true;
    }
    void checkDisk();
  }, 2_000);
  housekeeping.unref();
  started = true;
  log.info(
    { url: config.advertiseUrl, dataDir, replicas: config.replicas, writeQuorum: config.writeQuorum },
    'node ready',
  );

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      lifecycle.stopping = true;
      log.info('shutting down: finishing in-flight requests');
      membership.stop();
      await Promise.all([antiEntropy.stop(), scrubber.stop()]);
      ctx.apiKeys.stop();
      clearInterval(housekeeping);
      const closed = new Promise<void>((res) => server.close(() => res()));
      // close() ends the connections idle at that moment; those busy then end after their answer
      // (Connection: close, app.ts), or here, if a request ends without one.
      server.closeIdleConnections();
      let waited = 0;
      const idle = setInterval(() => {
        server.closeIdleConnections();
        // Every 5 s, say what the shutdown is waiting for.
        if (++waited % 20 === 0 && lifecycle.inFlight.size > 0) {
          const now = Date.now();
          log.info(
            {
              requests: [...lifecycle.inFlight.values()]
                .slice(0, 10)
                .map((r) => `${r.request} (${Math.round((now - r.since) / 1000)} s)`),
            },
            'shutdown waiting for requests in flight',
          );
        }
      }, 250);
      const forced = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
      await closed;
      clearInterval(idle);
      clearTimeout(forced);
      await peers.close();
      metadata.close();
      dataDirLock.release();
      log.info('stopped');
    })();
    return stopping;
  };
  return { ctx, server, stop };
}

/** Runs a node until SIGTERM or SIGINT, then stops it cleanly and exits 0. */
export async function runNode(config: Config): Promise<void> {
  const node = await startNode(config);
  const onSignal = (signal: NodeJS.Signals): void => {
    node.ctx.log.info({ signal }, 'signal received');
    node.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        node.ctx.log.error({ err }, 'unclean shutdown');
        process.exit(1);
      },
    );
  };
  // A stray rejection is a bug to fix, but not a reason to drop every request this node serves.
  process.on('unhandledRejection', (err) => node.ctx.log.error({ err }, 'unhandled rejection'));
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

/** A write probe unanswered for this long means the data dir hangs (a stuck volume, a dead NFS server). */
const DISK_HANG_MS = 10_000;

/**
 * Runs checkDataDir and reports what it finds (readiness, the full flag in gossip, one log line
 * per change), one at a time: a probe still running when the next is due is not doubled (on a
 * hung disk each would hold another libuv thread for good); once it has run DISK_HANG_MS the
 * node reports the data dir as hanging, like one that refuses writes, until a probe completes.
 */
function dataDirChecker(
  dataDir: string,
  minFreeBytes: number,
  lifecycle: Lifecycle,
  membership: Membership,
  log: Logger,
): () => Promise<void> {
  let running: { since: number; done: Promise<void> } | undefined;
  const report = (fault: string | undefined, lowSpace: boolean, detail?: string): void => {
    if (fault !== undefined && lifecycle.diskFault === null) {
      log.error(
        { dataDir, err: detail ?? fault },
        'data dir does not take writes; not ready, taking no new copies',
      );
    } else if (fault === undefined && lifecycle.diskFault !== null) {
      log.info({ dataDir }, 'data dir takes writes again; ready');
    }
    lifecycle.diskFault = fault ?? null;
    membership.setFull(
      fault !== undefined || lowSpace,
      fault
        ? `data dir does not take writes: ${fault}`
        : lowSpace
          ? 'free space under --min-free-bytes'
          : undefined,
    );
  };
  return () => {
    if (running) {
      const waited = Date.now() - running.since;
      if (waited >= DISK_HANG_MS) {
        report(`writes to the data dir hang (no answer in ${Math.round(waited / 1000)} s)`, false);
      }
      return running.done;
    }
    const done = checkDataDir(dataDir, minFreeBytes)
      .then(({ fault, lowSpace }) => report(fault?.reason, lowSpace, fault?.detail))
      .finally(() => {
        running = undefined;
      });
    running = { since: Date.now(), done };
    return done;
  };
}

/**
 * Run every few seconds: proves the data dir still takes writes (write, fsync, delete a probe
 * file) and measures its free space. A data dir that refuses writes (ext4 remounted read-only
 * after an error, a vanished volume) makes the node not ready, so load balancers route around
 * it and its public routes answer 503 with the reason; like one below --min-free-bytes, it also
 * makes the node announce through gossip that it takes no new copies, so writers and repair skip
 * it instead of failing against it. Its copies stay readable by peers. Both clear by themselves.
 */
async function checkDataDir(
  dataDir: string,
  minFreeBytes: number,
): Promise<{ fault: { reason: string; detail: string } | undefined; lowSpace: boolean }> {
  const fault = await probeWrites(dataDir);
  let lowSpace = false;
  try {
    const fs = await statfs(dataDir);
    lowSpace = fs.bavail * fs.bsize < minFreeBytes;
  } catch {
    // A vanished dir: the probe above already reported it.
  }
  return { fault, lowSpace };
}

/** Undefined when a probe file could be written, fsync'd and deleted; otherwise why not. */
async function probeWrites(dataDir: string): Promise<{ reason: string; detail: string } | undefined> {
  const probe = join(dataDir, 'tmp', '.write-probe');
  try {
    const handle = await open(probe, 'w');
    try {
      await handle.writeFile('ok');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await unlink(probe);
    return undefined;
  } catch (err) {
    return { reason: describeWriteFailure(err), detail: errorText(err) };
  }
}

/** A short account of a failed write that names no path (it is shown on /readyz). */
function describeWriteFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EROFS':
      return 'the file system is read-only (EROFS)';
    case 'ENOENT':
      return 'the data dir is missing (ENOENT)';
    case 'ENOSPC':
    case 'EDQUOT':
      return `no space left (${code})`;
    case 'EIO':
      return 'I/O error (EIO)';
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${code})`;
    default:
      return code ?? 'unknown error';
  }
}

async function readStoredId(dataDir: string): Promise<string | undefined> {
  try {
    return (await readFile(join(dataDir, 'node-id'), 'utf8')).trim() || undefined;
  } catch {
    return undefined;
  }
}

export type { Logger };
