import { createServer, type Server } from 'node:http';
import { mkdir, open, readFile, statfs, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createLogger, type Logger } from '../../../shared/logging';
import { resolveNodeId, type Config } from './config';
import { Catalog } from './files/catalog';
import { FileReader } from './files/download';
import { ApiKeys, LinkSigner } from './http/access';
import { buildApp } from './http/app';
import { clientErrorHandler } from './http/error-handler';
import type { NodeContext } from './http/context';
import { NodeMetrics } from './http/metrics';
import { Membership } from './membership/membership';
import { PeerClient } from './peers/peer-client';
import { QuorumWriter } from './replication/quorum-write';
import { catchUpDeletes, recordAlive } from './replication/catch-up';
import { Repairer } from './replication/repairer';
import { Scrubber } from './replication/scrubber';
import { BlobStore } from './store/blob-store';
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
  const selfId = resolveNodeId(config.nodeId, await readStoredId(dataDir));
  await writeFile(join(dataDir, 'node-id'), selfId + '\n');
  const log = createLogger({ nodeId: selfId, level: config.logLevel });
  const lifecycle = { ready: false, stopping: false };

  const metadata = new MetadataStore(join(dataDir, 'metadata.sqlite'));
  const blobs = new BlobStore(dataDir, metadata);
  await blobs.init();
  const reconciled = await blobs.reconcile();
  if (reconciled.orphanBlobs + reconciled.missingBlobs > 0) {
    log.warn(reconciled, 'start-up check: dropped blobs without a row and rows without a blob');
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
  const writer = new QuorumWriter(
    { replicas: config.replicas, writeQuorum: config.writeQuorum, maxFileSize: config.maxFileSize },
    selfId,
    membership,
    blobs,
    peers,
    log,
  );
  const repairer = new Repairer(
    {
      replicas: config.replicas,
      intervalMs: config.repairIntervalMs,
      bytesPerSecond: config.repairBytesPerSec,
      concurrency: config.repairConcurrency,
      tombstoneGraceMs: config.tombstoneGraceMs,
    },
    selfId,
    membership,
    metadata,
    blobs,
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
    writer,
    reader: new FileReader(selfId, membership, blobs, peers, scrubber, repairer, log),
    catalog: new Catalog(selfId, config.writeQuorum, membership, metadata, blobs, peers, log),
    repairer,
    scrubber,
    apiKeys: new ApiKeys(config.apiKeys, config.apiKeysFile, log),
    links: new LinkSigner(config.clusterSecret),
    lifecycle,
  };
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
  await checkFreeSpace(dataDir, config.minFreeBytes, membership);
  await membership.start();
  await catchUpDeletes(metadata, blobs, membership, peers, log);
  recordAlive(metadata);
  repairer.start();
  scrubber.start();
  const housekeeping = setInterval(() => {
    blobs
      .expirePending(PENDING_UPLOAD_TTL_MS)
      .catch((err: unknown) => log.warn({ err }, 'expiring temp uploads failed'));
    recordAlive(metadata);
    void checkDataDir(dataDir, lifecycle, log);
    void checkFreeSpace(dataDir, config.minFreeBytes, membership);
  }, 2_000);
  housekeeping.unref();
  lifecycle.ready = true;
  log.info(
    { url: config.advertiseUrl, dataDir, replicas: config.replicas, writeQuorum: config.writeQuorum },
    'node ready',
  );

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      lifecycle.ready = false;
      lifecycle.stopping = true;
      log.info('shutting down: finishing in-flight requests');
      membership.stop();
      repairer.stop();
      scrubber.stop();
      ctx.apiKeys.stop();
      clearInterval(housekeeping);
      const closed = new Promise<void>((res) => server.close(() => res()));
      server.closeIdleConnections();
      const forced = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
      await closed;
      clearTimeout(forced);
      await peers.close();
      metadata.close();
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

/**
 * Proves every few seconds that the data dir still takes writes (write, fsync, delete a probe
 * file). If it does not (read-only remount, vanished volume), the node reports not ready, so
 * load balancers and peers route around it, and logs why; it turns ready again once it can.
 */
async function checkDataDir(
  dataDir: string,
  lifecycle: { ready: boolean; stopping: boolean },
  log: Logger,
): Promise<void> {
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
    if (!lifecycle.ready && !lifecycle.stopping) {
      lifecycle.ready = true;
      log.info('data dir writable again; ready');
    }
  } catch (err) {
    if (lifecycle.ready)
      log.error({ err: (err as Error).message, dataDir }, 'data dir does not take writes; not ready');
    lifecycle.ready = false;
  }
}

/** Reports this node full (no new copies) while free space is under --min-free-bytes. */
async function checkFreeSpace(dataDir: string, minFreeBytes: number, membership: Membership): Promise<void> {
  try {
    const fs = await statfs(dataDir);
    membership.setFull(fs.bavail * fs.bsize < minFreeBytes);
  } catch {
    // The data dir check reports a vanished dir; nothing to add here.
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
