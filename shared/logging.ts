import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Structured JSON logs with fixed field names (nodeId, reqId, fileId, peer, bytes, ms) so that
 * lines from every node can be merged and filtered the same way.
 */
export function createLogger(options: { nodeId: string; level?: string }): Logger {
  return pino({
    level: options.level ?? process.env.SHOAL_LOG_LEVEL ?? 'info',
    base: { nodeId: options.nodeId },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['secret', 'clusterSecret', 'apiKeys', 'headers.authorization', 'headers["x-shoal-auth"]'],
      censor: '[redacted]',
    },
  });
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
