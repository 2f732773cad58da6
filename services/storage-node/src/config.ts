import { hostname } from 'node:os';
import { NODE_ID_PATTERN } from '../../../shared/ids';
import { readSecretFile, secretProblem } from './peers/cluster-secrets';

/**
 * Flags of `shoal node`, parsed once into a frozen, typed Config. Every flag can also come from
 * `SHOAL_<FLAG_IN_UPPER_SNAKE_CASE>`; a flag wins over its variable. Invalid values throw here,
 * at start, never later at the first request that happens to use them.
 */
export interface Config {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  /** From the flag or variable; the data dir may hold a stored one (see node-identity). */
  readonly nodeId: string | undefined;
  readonly advertiseUrl: string;
  /**
   * Where peers reach this node's internal routes: the advertise URL, or with --internal-port its
   * own listener (--internal-url, else the advertise URL on that port). Gossip carries this one.
   */
  readonly peerUrl: string;
  /** A listener of its own for node-to-node routes; the public port then does not serve them. */
  readonly internalPort: number | undefined;
  /** HTTPS on every listener: certificate chain and key files, re-read when they change. */
  readonly tls: TlsConfig | undefined;
  readonly seeds: readonly string[];
  readonly discoveryDns: string | undefined;
  readonly replicas: number;
  readonly writeQuorum: number;
  /** From --cluster-secret, or as --cluster-secret-file held them at start; none under --insecure. */
  readonly clusterSecrets: readonly string[];
  /** Re-read when it changes (ClusterSecrets). */
  readonly clusterSecretFile: string | undefined;
  readonly insecure: boolean;
  readonly apiKeys: readonly string[];
  /** A file of API keys (one per line or comma-separated), re-read when it changes. */
  readonly apiKeysFile: string | undefined;
  readonly maxFileSize: number;
  /** Uploads one node takes at once, and one client address may have under way (UploadGuard). */
  readonly maxUploads: number;
  readonly maxUploadsPerClient: number;
  /** An upload sending less than this (bytes/s, averaged over 30 s) is cut off with 408. */
  readonly uploadMinRate: number;
  readonly uploadDeadlineMs: number;
  /** Below this much free disk the node takes no new copies (it reports itself full). */
  readonly minFreeBytes: number;
  readonly failureTimeoutMs: number;
  readonly gossipIntervalMs: number;
  readonly scrubIntervalMs: number;
  readonly repairIntervalMs: number;
  readonly repairBytesPerSec: number;
  readonly repairConcurrency: number;
  readonly tombstoneGraceMs: number;
  /** The S3 listener's port on --host; 0: no S3 listener. */
  readonly s3Port: number;
  /** The region SigV4 signatures must name. */
  readonly s3Region: string;
  /** Base domain for virtual-host-style buckets (`<bucket>.<domain>`); path style always works. */
  readonly s3Domain: string | undefined;
  /** A multipart upload neither completed nor aborted this long after it began is removed. */
  readonly s3UploadExpiryMs: number;
  readonly logLevel: string;
}

export interface TlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  /**
   * The CA that signs this cluster's nodes: peers' certificates must chain to it (and only to it),
   * and with `mutual` nodes must present one to call internal routes. None: the system's CAs.
   */
  readonly caFile: string | undefined;
  readonly mutual: boolean;
}

export const NODE_FLAGS = [
  'host',
  'port',
  'data-dir',
  'node-id',
  'advertise-url',
  'internal-port',
  'internal-url',
  'tls-cert',
  'tls-key',
  'tls-ca',
  'mutual-tls',
  'seeds',
  'discovery-dns',
  'replicas',
  'write-quorum',
  'cluster-secret',
  'cluster-secret-file',
  'insecure',
  'api-keys',
  'api-keys-file',
  'max-file-size',
  'max-uploads',
  'max-uploads-per-client',
  'upload-min-rate',
  'upload-deadline-ms',
  'min-free-bytes',
  'failure-timeout-ms',
  'gossip-interval-ms',
  'scrub-interval-ms',
  'repair-interval-ms',
  'repair-bytes-per-sec',
  'repair-concurrency',
  'tombstone-grace-ms',
  's3-port',
  's3-region',
  's3-domain',
  's3-upload-expiry-ms',
  'log-level',
] as const;

export type NodeFlag = (typeof NODE_FLAGS)[number];
/** Flags that take no value (`--insecure`, not `--insecure true`); their variables take true or false. */
export const SWITCH_FLAGS: ReadonlySet<NodeFlag> = new Set(['insecure', 'mutual-tls']);
export type RawFlags = Partial<Record<NodeFlag, string | boolean>>;

export const DEFAULTS = Object.freeze({
  host: '0.0.0.0',
  port: 7000,
  dataDir: './data',
  replicas: 3,
  writeQuorum: 2,
  maxFileSize: 10 * 1024 ** 3,
  maxUploads: 256,
  maxUploadsPerClient: 64,
  uploadMinRate: 1024,
  uploadDeadlineMs: 6 * 60 * 60 * 1000,
  minFreeBytes: 256 * 1024 ** 2,
  failureTimeoutMs: 30_000,
  gossipIntervalMs: 1_000,
  scrubIntervalMs: 24 * 60 * 60 * 1000,
  repairIntervalMs: 10_000,
  repairBytesPerSec: 100 * 1024 * 1024,
  repairConcurrency: 4,
  tombstoneGraceMs: 7 * 24 * 60 * 60 * 1000,
  /** Off unless asked for: S3 is a second front door, opened on purpose (`npm start` opens it). */
  s3Port: 0,
  s3Region: 'us-east-1',
  s3UploadExpiryMs: 24 * 60 * 60 * 1000,
  logLevel: 'info',
});

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Whether a host name or address (no port, no brackets) is this machine's loopback. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export function envName(flag: NodeFlag): string {
  return 'SHOAL_' + flag.toUpperCase().replace(/-/g, '_');
}

export function parseConfig(flags: RawFlags, env: NodeJS.ProcessEnv = process.env): Config {
  const raw = (flag: NodeFlag): string | undefined => {
    const fromFlag = flags[flag];
    if (fromFlag !== undefined) return String(fromFlag);
    const fromEnv = env[envName(flag)];
    return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
  };

  const host = raw('host') ?? DEFAULTS.host;
  const port = integer('port', raw('port'), DEFAULTS.port, 0, 65535);
  const nodeId = raw('node-id');
  if (nodeId !== undefined && !NODE_ID_PATTERN.test(nodeId)) {
    throw new ConfigError(`--node-id must be 1-64 characters of letters, digits, ".", "-" and "_"`);
  }
  const replicas = integer('replicas', raw('replicas'), DEFAULTS.replicas, 1, 16);
  const writeQuorum = integer('write-quorum', raw('write-quorum'), DEFAULTS.writeQuorum, 1, 16);
  if (writeQuorum > replicas) {
    throw new ConfigError(`--write-quorum (${writeQuorum}) cannot exceed --replicas (${replicas})`);
  }
  const insecure = bool('insecure', raw('insecure'));
  const clusterSecret = raw('cluster-secret');
  const clusterSecretFile = raw('cluster-secret-file');
  let clusterSecrets: string[] = [];
  if (clusterSecret !== undefined && clusterSecretFile !== undefined) {
    throw new ConfigError('give --cluster-secret or --cluster-secret-file, not both');
  } else if (clusterSecret !== undefined) {
    const problem = secretProblem(clusterSecret);
    if (problem) throw new ConfigError(`--cluster-secret ${problem}`);
    clusterSecrets = [clusterSecret];
  } else if (clusterSecretFile !== undefined) {
    try {
      clusterSecrets = readSecretFile(clusterSecretFile);
    } catch (err) {
      throw new ConfigError(`--cluster-secret-file ${clusterSecretFile}: ${(err as Error).message}`);
    }
  } else if (!insecure) {
    throw new ConfigError(
      '--cluster-secret or --cluster-secret-file is required (or pass --insecure for a throwaway cluster)',
    );
  }
  const failureTimeoutMs = integer(
    'failure-timeout-ms',
    raw('failure-timeout-ms'),
    DEFAULTS.failureTimeoutMs,
    100,
  );
  const gossipIntervalMs = integer(
    'gossip-interval-ms',
    raw('gossip-interval-ms'),
    DEFAULTS.gossipIntervalMs,
    10,
  );
  if (failureTimeoutMs < 2 * gossipIntervalMs) {
    throw new ConfigError('--failure-timeout-ms must be at least twice --gossip-interval-ms');
  }
  const tls = tlsConfig(
    raw('tls-cert'),
    raw('tls-key'),
    raw('tls-ca'),
    bool('mutual-tls', raw('mutual-tls')),
  );
  const scheme = tls ? 'https' : 'http';
  const advertiseUrl = baseUrl(
    'advertise-url',
    raw('advertise-url') ?? `${scheme}://${host === '0.0.0.0' || host === '::' ? hostname() : host}:${port}`,
  );
  const internalPortRaw = raw('internal-port');
  const internalPort =
    internalPortRaw === undefined ? undefined : integer('internal-port', internalPortRaw, 0, 1, 65535);
  if (internalPort !== undefined && internalPort === port)
    throw new ConfigError('--internal-port must differ from --port');
  const internalUrl = raw('internal-url');
  if (internalUrl !== undefined && internalPort === undefined)
    throw new ConfigError('--internal-url needs --internal-port');
  let peerUrl = advertiseUrl;
  if (internalUrl !== undefined) peerUrl = baseUrl('internal-url', internalUrl);
  else if (internalPort !== undefined) {
    const url = new URL(advertiseUrl);
    url.port = String(internalPort);
    peerUrl = baseUrl('advertise-url', url.href);
  }
  const s3Port = integer('s3-port', raw('s3-port'), DEFAULTS.s3Port, 0, 65535);
  if (s3Port !== 0 && (s3Port === port || s3Port === internalPort))
    throw new ConfigError('--s3-port must differ from --port and --internal-port');
  const s3Region = raw('s3-region') ?? DEFAULTS.s3Region;
  if (!/^[a-z0-9-]{1,64}$/.test(s3Region))
    throw new ConfigError('--s3-region is a region name: lower-case letters, digits and "-"');
  const s3Domain = raw('s3-domain')?.toLowerCase();
  if (s3Domain !== undefined && !/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(s3Domain))
    throw new ConfigError('--s3-domain is a DNS name, such as s3.example.com');
  const s3UploadExpiryMs = integer(
    's3-upload-expiry-ms',
    raw('s3-upload-expiry-ms'),
    DEFAULTS.s3UploadExpiryMs,
    1000,
    365 * 24 * 60 * 60 * 1000,
  );
  const logLevel = raw('log-level') ?? DEFAULTS.logLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  }

  return Object.freeze({
    host,
    port,
    dataDir: raw('data-dir') ?? DEFAULTS.dataDir,
    nodeId,
    advertiseUrl,
    peerUrl,
    internalPort,
    tls,
    seeds: Object.freeze(list(raw('seeds')).map((s) => baseUrl('seeds', s))),
    discoveryDns: raw('discovery-dns'),
    replicas,
    writeQuorum,
    clusterSecrets: Object.freeze(clusterSecrets),
    clusterSecretFile,
    insecure,
    apiKeys: Object.freeze(list(raw('api-keys'))),
    apiKeysFile: raw('api-keys-file'),
    maxFileSize: integer('max-file-size', raw('max-file-size'), DEFAULTS.maxFileSize, 1),
    maxUploads: integer('max-uploads', raw('max-uploads'), DEFAULTS.maxUploads, 1),
    maxUploadsPerClient: integer(
      'max-uploads-per-client',
      raw('max-uploads-per-client'),
      DEFAULTS.maxUploadsPerClient,
      1,
    ),
    uploadMinRate: integer('upload-min-rate', raw('upload-min-rate'), DEFAULTS.uploadMinRate, 0),
    uploadDeadlineMs: integer(
      'upload-deadline-ms',
      raw('upload-deadline-ms'),
      DEFAULTS.uploadDeadlineMs,
      1000,
    ),
    minFreeBytes: integer('min-free-bytes', raw('min-free-bytes'), DEFAULTS.minFreeBytes, 0),
    failureTimeoutMs,
    gossipIntervalMs,
    scrubIntervalMs: integer('scrub-interval-ms', raw('scrub-interval-ms'), DEFAULTS.scrubIntervalMs, 1000),
    repairIntervalMs: integer('repair-interval-ms', raw('repair-interval-ms'), DEFAULTS.repairIntervalMs, 50),
    repairBytesPerSec: integer(
      'repair-bytes-per-sec',
      raw('repair-bytes-per-sec'),
      DEFAULTS.repairBytesPerSec,
      1024,
    ),
    repairConcurrency: integer(
      'repair-concurrency',
      raw('repair-concurrency'),
      DEFAULTS.repairConcurrency,
      1,
      64,
    ),
    tombstoneGraceMs: integer('tombstone-grace-ms', raw('tombstone-grace-ms'), DEFAULTS.tombstoneGraceMs, 0),
    s3Port,
    s3Region,
    s3Domain,
    s3UploadExpiryMs,
    logLevel,
  });
}

/** The identity this node runs under: the flag, else the one kept in the data dir, else the host name. */
export function resolveNodeId(fromConfig: string | undefined, stored: string | undefined): string {
  if (fromConfig !== undefined && stored !== undefined && fromConfig !== stored) {
    throw new ConfigError(
      `--node-id ${fromConfig} differs from ${stored}, the id this data dir already belongs to; ` +
        'a data dir keeps one identity for life',
    );
  }
  const id = fromConfig ?? stored ?? hostname();
  if (!NODE_ID_PATTERN.test(id))
    throw new ConfigError(`node id ${JSON.stringify(id)} is not a valid node id`);
  return id;
}

function tlsConfig(
  certFile: string | undefined,
  keyFile: string | undefined,
  caFile: string | undefined,
  mutual: boolean,
): TlsConfig | undefined {
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new ConfigError('--tls-cert and --tls-key go together');
  if (certFile === undefined || keyFile === undefined) {
    if (caFile !== undefined || mutual)
      throw new ConfigError('--tls-ca and --mutual-tls need --tls-cert and --tls-key');
    return undefined;
  }
  if (mutual && caFile === undefined)
    throw new ConfigError("--mutual-tls needs --tls-ca, the CA that signs the nodes' certificates");
  return Object.freeze({ certFile, keyFile, caFile, mutual });
}

function integer(
  flag: NodeFlag,
  value: string | undefined,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value.trim()))
    throw new ConfigError(`--${flag} must be a whole number, got ${JSON.stringify(value)}`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`--${flag} must be between ${min} and ${max}, got ${value}`);
  }
  return n;
}

function bool(flag: NodeFlag, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (['true', '1', 'yes'].includes(value)) return true;
  if (['false', '0', 'no'].includes(value)) return false;
  throw new ConfigError(`--${flag} must be true or false, got ${JSON.stringify(value)}`);
}

function list(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function baseUrl(flag: NodeFlag, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`--${flag} must be an http(s) URL, got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`--${flag} must be an http(s) URL, got ${JSON.stringify(value)}`);
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}
