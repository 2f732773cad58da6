#!/usr/bin/env node
import './runtime-check';
import { Command, Option } from 'commander';
import {
  ConfigError,
  DEFAULTS,
  envName,
  NODE_FLAGS,
  parseConfig,
  SWITCH_FLAGS,
  type RawFlags,
} from './config';
import { runDevCluster } from './dev-cluster';
import { execWithHeapFlags } from './heap-tuning';
import { runNode } from './main';
import { DataDirLockedError } from './store/data-dir-lock';
import { registerClientCommands } from './client/commands';

const FLAG_HELP: Record<(typeof NODE_FLAGS)[number], string> = {
  host: `address to listen on (default ${DEFAULTS.host})`,
  port: `port to listen on (default ${DEFAULTS.port})`,
  'data-dir': `this node's own directory: SQLite metadata and blobs (default ${DEFAULTS.dataDir})`,
  'node-id': 'stable identity, kept in the data dir after first start (default: the host name)',
  'advertise-url':
    'base URL at which peers and clients reach this node (default http://<host>:<port>, https with --tls-cert)',
  'internal-port':
    'a listener of its own for node-to-node routes (firewall it to the nodes); the public port then refuses them',
  'internal-url': 'base URL at which peers reach --internal-port (default: the advertise URL on that port)',
  'tls-cert': 'PEM certificate chain: HTTPS on every listener; re-read when it changes',
  'tls-key': 'PEM private key of --tls-cert; re-read when it changes',
  'tls-ca': "PEM CA that signs the cluster's nodes; peers' certificates must chain to it",
  'mutual-tls':
    'nodes present their certificate to each other; internal routes refuse callers without one from --tls-ca',
  seeds: 'comma-separated base URLs of nodes already running (their internal URLs, with --internal-port)',
  'discovery-dns': 'host name whose A/AAAA records are peers (a Kubernetes headless Service)',
  replicas: `copies kept of every file, N (default ${DEFAULTS.replicas})`,
  'write-quorum': `copies durable before an upload is acknowledged, W (default ${DEFAULTS.writeQuorum})`,
  'cluster-secret': 'shared secret that authenticates node-to-node traffic (16+ characters)',
  'cluster-secret-file':
    'file holding the cluster secret, re-read when it changes; a second line is also accepted (rotation)',
  insecure: 'allow running without --cluster-secret (throwaway clusters only)',
  'api-keys': 'comma-separated API keys; when set, requests need Authorization: Bearer <key>',
  'api-keys-file': 'file of API keys (one per line), re-read when it changes (a Kubernetes Secret mount)',
  'max-file-size': `largest accepted upload in bytes (default ${DEFAULTS.maxFileSize})`,
  'max-uploads': `uploads one node takes at once; past it, 503 with Retry-After (default ${DEFAULTS.maxUploads})`,
  'max-uploads-per-client': `uploads one client address may have under way on one node (default ${DEFAULTS.maxUploadsPerClient})`,
  'upload-min-rate': `bytes/s below which (averaged over 30 s) an upload is cut off with 408; 0 turns it off (default ${DEFAULTS.uploadMinRate})`,
  'upload-deadline-ms': `longest an upload may last (default ${DEFAULTS.uploadDeadlineMs})`,
  'min-free-bytes': `free disk below which the node takes no new copies and reports itself full (default ${DEFAULTS.minFreeBytes})`,
  's3-port': `port of this node's S3 listener, on --host; 0 turns it off (default ${DEFAULTS.s3Port}: off)`,
  's3-region': `region that SigV4 signatures must name (default ${DEFAULTS.s3Region})`,
  's3-domain': 'base domain for virtual-host-style buckets (<bucket>.<domain>); path style always works',
  's3-upload-expiry-ms': `a multipart upload neither completed nor aborted this long after it began is removed (default ${DEFAULTS.s3UploadExpiryMs})`,
  'failure-timeout-ms': `how long a silent peer stays before it is declared dead (default ${DEFAULTS.failureTimeoutMs})`,
  'gossip-interval-ms': `how often membership is exchanged (default ${DEFAULTS.gossipIntervalMs})`,
  'scrub-interval-ms': `how often blobs are re-read and verified (default ${DEFAULTS.scrubIntervalMs})`,
  'repair-interval-ms': `how often each node compares its partitions with their replicas (default ${DEFAULTS.repairIntervalMs})`,
  'repair-bytes-per-sec': `bandwidth one node spends receiving repair copies (default ${DEFAULTS.repairBytesPerSec})`,
  'repair-concurrency': `copies one node repairs at once (default ${DEFAULTS.repairConcurrency})`,
  'tombstone-grace-ms': `how long a delete's tombstone outlives the file, for owners that never return (default ${DEFAULTS.tombstoneGraceMs})`,
  'log-level': `fatal, error, warn, info, debug, trace or silent (default ${DEFAULTS.logLevel})`,
};

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

export function buildProgram(): Command {
  const program = new Command('shoal')
    .description('Shoal: shared-nothing file storage')
    .showHelpAfterError()
    .exitOverride();

  const node = program.command('node').description('run one storage node');
  for (const flag of NODE_FLAGS) {
    const option = SWITCH_FLAGS.has(flag)
      ? new Option(`--${flag}`, FLAG_HELP[flag])
      : new Option(`--${flag} <value>`, `${FLAG_HELP[flag]} [env ${envName(flag)}]`);
    node.addOption(option);
  }
  node.action(async (opts: Record<string, string | boolean | undefined>) => {
    execWithHeapFlags();
    const raw: RawFlags = {};
    for (const flag of NODE_FLAGS) {
      const value = opts[camel(flag)];
      if (value !== undefined) raw[flag] = value;
    }
    await runNode(parseConfig(raw));
  });

  program
    .command('dev')
    .description('run a local cluster of N nodes on 127.0.0.1 (what npm start runs)')
    .option('--nodes <n>', 'number of nodes', '3')
    .option('--base-port <port>', 'port of the first node; the others follow', '7001')
    .option('--data-dir <dir>', "parent directory of the nodes' data dirs", './data')
    .action(async (opts: { nodes: string; basePort: string; dataDir: string }) => {
      const nodes = Number(opts.nodes);
      const basePort = Number(opts.basePort);
      if (!Number.isInteger(nodes) || nodes < 1 || nodes > 50)
        throw new ConfigError('--nodes must be from 1 to 50');
      if (!Number.isInteger(basePort) || basePort < 1 || basePort + nodes > 65536)
        throw new ConfigError('--base-port is out of range');
      await runDevCluster({ nodes, basePort, dataDir: opts.dataDir });
    });

  registerClientCommands(program);
  return program;
}

async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (e.code?.startsWith('commander.')) process.exit(e.exitCode ?? 2);
    if (err instanceof ConfigError || err instanceof DataDirLockedError) {
      process.stderr.write(`shoal: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`shoal: ${e.message ?? String(err)}\n`);
    process.exit(1);
  }
}

if (require.main === module) void main();
