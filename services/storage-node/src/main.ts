import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errorText } from '../../../shared/errors';
import { createLogger, type Logger } from '../../../shared/logging';
import { BackgroundWorker, type Worker } from '../../../shared/worker';
import { isLoopbackHost, resolveNodeId, type Config } from './config';
import { Catalog } from './files/catalog';
import { FileReader } from './files/download';
import { ApiKeys, LinkSigner } from './http/access';
import { buildApp, type Listener } from './http/app';
import { withReadLane } from './http/read-lane';
import { Registry } from './registry/registry';
import { RegistrySync } from './registry/registry-sync';
import { S3Buckets } from './s3/buckets';
import { S3Keys } from './s3/keys';
import { UPLOAD_RECORD_TYPE } from './s3/listing';
import { S3Multipart } from './s3/multipart';
import { S3Objects } from './s3/objects';
import { S3Sweep } from './s3/sweep';
import { s3RequestListener } from './s3/server';
import { clientErrorHandler } from './http/error-handler';
import type { Lifecycle, NodeContext } from './http/context';
import { NodeMetrics } from './http/metrics';
import { Membership } from './membership/membership';
import { PeerClient } from './peers/peer-client';
import { ClusterSecrets } from './peers/cluster-secrets';
import { TlsFiles } from './peers/tls';
import { UploadGuard } from './files/upload-guard';
import { QuorumWriter } from './replication/quorum-write';
import { CatchUp, lastAliveAt } from './replication/catch-up';
import { AntiEntropy } from './replication/anti-entropy';
import { CopyFetcher } from './replication/copy-fetcher';
import { LocalNode } from './replication/local-node';
import { Nodes } from './replication/nodes';
import { Scrubber } from './replication/scrubber';
import { nodeStatus } from './http/node-status';
import { BlobStore } from './store/blob-store';
import { writeFileDurably } from './store/durable-file';
import { DataDirMonitor } from './store/data-dir-monitor';
import { lockDataDir } from './store/data-dir-lock';
import { MetadataStore } from './store/metadata';

export interface RunningNode {
  ctx: NodeContext;
  server: Server;
  /** The listener of --internal-port, if any. */
  internalServer: Server | undefined;
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
/** Quarantined blobs not adopted again within this long are deleted (sooner when space runs short). */
const QUARANTINE_MAX_AGE_MS = 7 * 24 * 3600_000;
const HOUSEKEEPING_MS = 2_000;
/** How often a node compares its registry (S3 keys, buckets) with a random member's. */
const REGISTRY_SYNC_MS = 3_000;

/** Composition root: config -> parts -> listen. Nothing else builds parts. */
export async function startNode(config: Config): Promise<RunningNode> {
  const dataDir = resolve(config.dataDir);
  await mkdir(dataDir, { recursive: true });
  // Before anything in the data dir is read or changed: a second process on it stops here.
  const dataDirLock = lockDataDir(dataDir);
  const storedId = await readStoredId(dataDir);
  const selfId = resolveNodeId(config.nodeId, storedId);
  // Written once, durably: a plain write left it empty after a power cut soon after the first
  // start (test/chaos/power-loss.test.ts), and a node started without --node-id would then take
  // the host name and disown the data dir's copies. Never rewritten, so never truncated either.
  if (storedId !== selfId) await writeFileDurably(join(dataDir, 'node-id'), selfId + '\n');
  const log = createLogger({ nodeId: selfId, level: config.logLevel });
  warnIfInsecure(config, log);
  let started = false;
  const lifecycle: Lifecycle = {
    stopping: false,
    diskFault: null,
    catchingUp: 'this node is starting',
    inFlight: new Map(),
    get ready() {
      return started && this.catchingUp === null && !this.stopping && this.diskFault === null;
    },
  };

  const metadata = new MetadataStore(join(dataDir, 'metadata.sqlite'));
  const blobs = new BlobStore(dataDir, metadata);
  await blobs.init();
  const secrets = new ClusterSecrets(config.clusterSecrets, config.clusterSecretFile, log);
  await secrets.start();
  const tls = config.tls && new TlsFiles(config.tls, log);
  const peers = new PeerClient({
    nodeId: selfId,
    secret: secrets,
    transferBytesPerSec: config.repairBytesPerSec,
    tls,
  });
  const membership = new Membership(
    {
      selfId,
      selfUrl: config.peerUrl,
      publicUrl: config.advertiseUrl,
      seeds: config.seeds,
      discoveryDns: config.discoveryDns,
      scheme: config.tls ? 'https' : 'http',
      port: config.internalPort ?? config.port,
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
  let walked: () => void = () => undefined;
  const startupWalk = new Promise<void>((resolve) => (walked = resolve));
  const fetcher = new CopyFetcher(config.repairBytesPerSec, metadata, blobs, peers, log, startupWalk);
  const local = new LocalNode(
    {
      id: selfId,
      url: config.peerUrl,
      ready: () => lifecycle.ready,
      full: () => membership.isFull(selfId),
      isMemberUrl: (url) => membership.view().some((m) => m.url === url),
      status: () => nodeStatus(ctx),
      caughtUp: () => lifecycle.catchingUp === null,
      lastAliveAt: () => lastAliveAt(metadata),
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
      active: () => lifecycle.catchingUp === null,
    },
    membership,
    nodes,
    metadata,
    fetcher,
    log,
  );
  const registry = new Registry(join(dataDir, 'registry.sqlite'), selfId);
  const registrySync = new RegistrySync(
    registry,
    {
      others: () => membership.view().flatMap((m) => (m.id !== selfId && m.state !== 'dead' ? [m.url] : [])),
      sync: (url, digest) => peers.registrySync(url, digest),
      merge: (url, entries, timeoutMs) => peers.registryMerge(url, entries, timeoutMs),
    },
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
    local,
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
    secrets,
    links: new LinkSigner(secrets),
    uploads: new UploadGuard({
      maxUploads: config.maxUploads,
      maxUploadsPerClient: config.maxUploadsPerClient,
      minBytesPerSec: config.uploadMinRate,
      deadlineMs: config.uploadDeadlineMs,
    }),
    lifecycle,
    registry,
    registrySync,
    s3Keys: new S3Keys(registry, registrySync),
    s3Buckets: new S3Buckets(registry, registrySync),
  };
  await ctx.apiKeys.start();

  tls?.start();
  const s3 = config.s3Port !== 0 ? s3Parts(ctx) : undefined;
  const listening: Server[] = [];
  const listen = async (port: number, serves: Listener | 's3'): Promise<Server> => {
    const server = createListener(ctx, serves, tls, s3);
    listening.push(server);
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(port, config.host, () => {
        server.off('error', rej);
        res();
      });
    });
    return server;
  };
  const server = await listen(config.port, config.internalPort === undefined ? 'all' : 'public');
  const internalServer =
    config.internalPort === undefined ? undefined : await listen(config.internalPort, 'internal');
  if (config.s3Port !== 0) await listen(config.s3Port, 's3');
  const dataDirMonitor = new DataDirMonitor(
    { dataDir, minFreeBytes: config.minFreeBytes },
    {
      setFault: (fault) => (lifecycle.diskFault = fault),
      setFull: (full, reason) => membership.setFull(full, reason),
    },
    log,
  );
  await dataDirMonitor.check();
  await membership.start();
  const catchUp = new CatchUp(
    {
      replicas: config.replicas,
      writeQuorum: config.writeQuorum,
      tombstoneGraceMs: config.tombstoneGraceMs,
      expectsPeers: config.seeds.length > 0 || config.discoveryDns !== undefined,
      outOfTouchMs: config.failureTimeoutMs,
      gossipIntervalMs: config.gossipIntervalMs,
    },
    metadata,
    blobs,
    nodes,
    membership,
    (reason) => (lifecycle.catchingUp = reason),
    log,
  );
  // Usually done at once (a restart with peers up); otherwise the worker keeps trying, and the
  // node stays not ready meanwhile.
  await catchUp.attempt();
  const catchingUp = new BackgroundWorker(
    catchUp,
    { firstMs: HOUSEKEEPING_MS, idleMs: HOUSEKEEPING_MS },
    log,
  );
  catchingUp.start();
  antiEntropy.start();
  scrubber.start();
  const housekeeping = new BackgroundWorker(
    housekeeper(blobs, config.minFreeBytes, log),
    { firstMs: HOUSEKEEPING_MS, idleMs: HOUSEKEEPING_MS },
    log,
  );
  housekeeping.start();
  const registrySyncing = new BackgroundWorker(
    registrySync,
    { firstMs: config.gossipIntervalMs, idleMs: REGISTRY_SYNC_MS },
    log,
  );
  registrySyncing.start();
  const s3Sweeping = s3
    ? new BackgroundWorker(
        s3Sweeper(s3, ctx.s3Buckets, metadata, config.s3UploadExpiryMs, log),
        {
          firstMs: Math.min(config.s3UploadExpiryMs, 60_000),
          idleMs: Math.min(Math.max(config.s3UploadExpiryMs / 4, 1_000), 10 * 60_000),
        },
        log,
      )
    : undefined;
  s3Sweeping?.start();
  dataDirMonitor.start();
  started = true;
  // The start-up check walks every blob and row: in the background, so that a node holding a
  // million files turns ready in seconds. Reads do not wait for it: a row without its blob fails
  // over and takes the copy out of service, and a blob without a row is never read. Pulls wait
  // for its walk of blobs/ (CopyFetcher).
  void startupCheck(blobs, ctx.metrics, log, walked);
  log.info(
    { url: config.advertiseUrl, dataDir, replicas: config.replicas, writeQuorum: config.writeQuorum },
    catchUp.caughtUp ? 'node ready' : 'node started; catching up with peers before it serves',
  );

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      lifecycle.stopping = true;
      log.info('shutting down: finishing in-flight requests');
      membership.stop();
      await Promise.all([
        antiEntropy.stop(),
        scrubber.stop(),
        housekeeping.stop(),
        dataDirMonitor.stop(),
        catchingUp.stop(),
        registrySyncing.stop(),
        s3Sweeping?.stop(),
      ]);
      ctx.apiKeys.stop();
      secrets.stop();
      tls?.stop();
      const closed = Promise.all(listening.map((l) => new Promise<void>((res) => l.close(() => res()))));
      // close() ends the connections idle at that moment; those busy then end after their answer
      // (Connection: close, app.ts), or here, if a request ends without one.
      for (const l of listening) l.closeIdleConnections();
      let waited = 0;
      const idle = setInterval(() => {
        for (const l of listening) l.closeIdleConnections();
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
      const forced = setTimeout(() => {
        for (const l of listening) l.closeAllConnections();
      }, SHUTDOWN_GRACE_MS);
      await closed;
      clearInterval(idle);
      clearTimeout(forced);
      await peers.close();
      await metadata.close();
      registry.close();
      dataDirLock.release();
      log.info('stopped');
    })();
    return stopping;
  };
  return { ctx, server, internalServer, stop };
}

/** What a public or internal listener answers with: express, behind the read lane on public ports. */
function appHandler(ctx: NodeContext, serves: Listener): RequestListener {
  const app = buildApp(ctx, serves);
  return serves === 'internal' ? app : withReadLane(ctx, app);
}

function s3Handler(ctx: NodeContext, s3: S3Parts): RequestListener {
  return s3RequestListener({
    region: ctx.config.s3Region,
    domain: ctx.config.s3Domain,
    keys: ctx.s3Keys,
    buckets: ctx.s3Buckets,
    objects: s3.objects,
    multipart: s3.multipart,
    reader: ctx.reader,
    log: ctx.log,
    ready: () => ctx.lifecycle.ready,
    stopping: () => ctx.lifecycle.stopping,
  });
}

interface S3Parts {
  objects: S3Objects;
  multipart: S3Multipart;
}

function s3Parts(ctx: NodeContext): S3Parts {
  const objects = new S3Objects(
    { replicas: ctx.config.replicas, writeQuorum: ctx.config.writeQuorum },
    ctx.membership,
    ctx.nodes,
    ctx.writer,
    ctx.reader,
    ctx.catalog,
    ctx.log,
  );
  return {
    objects,
    multipart: new S3Multipart(objects, ctx.reader, ctx.nodes, ctx.config.writeQuorum, ctx.log),
  };
}

/**
 * S3's clean-up, a few times per expiry period: the multipart uploads older than
 * --s3-upload-expiry-ms are aborted, then what crashes and races left (S3Sweep) is removed. The files
 * left over are taken as such once as old as the expiry, replaced versions at most 10 minutes
 * after their successor.
 */
function s3Sweeper(
  s3: S3Parts,
  buckets: S3Buckets,
  metadata: MetadataStore,
  expiryMs: number,
  log: Logger,
): Worker {
  const leftovers = new S3Sweep(
    s3.objects,
    s3.multipart,
    (after, limit) => metadata.allObjectRows(after, limit),
    (id) => buckets.isDeleted(id),
    { graceMs: Math.min(expiryMs, 10 * 60_000), partAgeMs: expiryMs },
    log,
  );
  return {
    name: 's3-sweep',
    async work() {
      await s3.multipart.sweep(expiryMs, (before) => metadata.uploadsBefore(UPLOAD_RECORD_TYPE, before));
      await leftovers.pass();
      return 'idle';
    },
  };
}

/**
 * One listener: plain HTTP, or HTTPS with the node's certificate (swapped in place when the files
 * change, for the connections that follow).
 */
function createListener(
  ctx: NodeContext,
  serves: Listener | 's3',
  tls: TlsFiles | undefined,
  s3: S3Parts | undefined,
): Server {
  if (serves === 's3' && !s3) throw new Error('an S3 listener needs the S3 objects and multipart parts');
  const handler = serves === 's3' ? s3Handler(ctx, s3!) : appHandler(ctx, serves);
  const options = { maxHeaderSize: MAX_HEADER_BYTES };
  let server: Server;
  if (tls) {
    const secure = createHttpsServer({ ...options, ...tls.serverOptions() }, handler);
    tls.onChange(() => secure.setSecureContext(tls.secureContextOptions()));
    // A failed handshake (a plain-HTTP client, an unknown CA) is the client's problem, not an error here.
    secure.on('tlsClientError', (err) => ctx.log.debug({ err: err.message }, 'TLS handshake failed'));
    server = secure as unknown as Server;
  } else {
    server = createServer(options, handler);
  }
  server.on(
    'clientError',
    clientErrorHandler({
      maxHeaderBytes: MAX_HEADER_BYTES,
      log: ctx.log,
      onRefused: (status) => ctx.metrics.parserRefusals.inc({ status: String(status) }),
    }),
  );
  // Uploads of many GiB take longer than any fixed whole-request limit; stalls are caught by the
  // socket inactivity timeout instead. Headers must still arrive promptly.
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  server.setTimeout(120_000);
  return server;
}

/**
 * --insecure turns off what the cluster secret protects; said loudly at every start, and more
 * loudly where it matters: on an address other machines reach, or next to API keys, which then
 * guard the public routes only. (Refusing those outright, as a stricter reading would, breaks the
 * contract's `--insecure` on its default host 0.0.0.0.)
 */
function warnIfInsecure(config: Config, log: Logger): void {
  if (config.clusterSecrets.length > 0) return;
  const exposed = !isLoopbackHost(config.host);
  const withKeys = config.apiKeys.length > 0 || config.apiKeysFile !== undefined;
  log.warn(
    { host: config.host, exposed, withKeys },
    'INSECURE: no cluster secret. Node-to-node calls are not authenticated and signed download links are off. ' +
      (exposed
        ? `Anyone who reaches ${config.host}:${config.port} can write and delete copies and join the cluster. `
        : '') +
      (withKeys ? 'The API keys guard the public routes only, not /internal/. ' : '') +
      'For throwaway clusters only: give --cluster-secret or --cluster-secret-file.',
  );
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

/** Runs the start-up check (BlobStore.setAsideUnexplained, then forgetMissing); reports it in the log and in /metrics. */
async function startupCheck(
  blobs: BlobStore,
  metrics: NodeMetrics,
  log: Logger,
  walked: () => void,
): Promise<void> {
  try {
    const setAside = await blobs.setAsideUnexplained().finally(walked);
    const reconciled = { ...setAside, missingBlobs: await blobs.forgetMissing() };
    if (reconciled.orphanBlobs + reconciled.missingBlobs > 0) {
      log.warn(
        reconciled,
        'start-up check: set aside blobs without a row in quarantine/, forgot rows without a blob',
      );
    } else if (reconciled.deletedBlobs > 0) {
      log.info(reconciled, 'start-up check: removed the bytes of deletes a crash interrupted');
    }
    metrics.startupUnexplained.set({ kind: 'blob_without_row' }, reconciled.orphanBlobs);
    metrics.startupUnexplained.set({ kind: 'row_without_blob' }, reconciled.missingBlobs);
  } catch (err) {
    log.warn({ err: errorText(err) }, 'start-up check failed');
  }
}

/**
 * Records that this node is alive and forgets temp uploads nobody committed or aborted. A worker
 * apart from the data dir check, whose steps wait up to its hang limit for a probe: neither waits
 * behind the other's I/O.
 */
function housekeeper(blobs: BlobStore, minFreeBytes: number, log: Logger): Worker {
  let expiring: Promise<void> | undefined;
  let sweeping: Promise<void> | undefined;
  return {
    name: 'housekeeping',
    work: async () => {
      // Not awaited: an unlink on a hung disk must hold up neither the next stamp nor shutdown.
      // One expiry at a time, though, so they do not pile up behind it.
      expiring ??= blobs
        .expirePending(PENDING_UPLOAD_TTL_MS)
        .then(
          () => undefined,
          (err: unknown) => log.warn({ err }, 'expiring temp uploads failed'),
        )
        .finally(() => (expiring = undefined));
      // Quarantine keeps what it cannot explain, but never for ever and never at the cost of
      // space the node needs: old entries go, and the oldest go first while space is short.
      sweeping ??= blobs
        .sweepQuarantine(QUARANTINE_MAX_AGE_MS, minFreeBytes)
        .then(
          (removed) => {
            if (removed > 0) log.info({ removed }, 'removed old quarantined blobs');
          },
          (err: unknown) => log.warn({ err }, 'sweeping quarantine failed'),
        )
        .finally(() => (sweeping = undefined));
      return 'idle';
    },
  };
}

async function readStoredId(dataDir: string): Promise<string | undefined> {
  try {
    return (await readFile(join(dataDir, 'node-id'), 'utf8')).trim() || undefined;
  } catch {
    return undefined;
  }
}

export type { Logger };
