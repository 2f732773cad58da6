/**
 * Exit codes of the client commands. Scripts branch on these, so each means one thing and they
 * never change: a retry loop can wait on 5, a cleanup job can treat 3 as "already gone".
 */
export const EXIT = {
  ok: 0,
  /** The server failed, or anything not covered below. */
  error: 1,
  /** The command line is wrong: a missing argument, a malformed id, a file that cannot be read. */
  usage: 2,
  notFound: 3,
  /** Missing or wrong API key (401, 403). */
  auth: 4,
  /** No node answered, or too few nodes to take the upload (503). */
  unavailable: 5,
  /** Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it). */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as `shoal: <message>` on stderr before exiting with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}

export function usageError(message: string): CliError {
  return new CliError(message, EXIT.usage);
}

/** The exit code for an HTTP error status, as the contract's error table assigns them. */
export function exitCodeForStatus(status: number): ExitCode {
  if (status === 400) return EXIT.usage;
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404) return EXIT.notFound;
  if (status === 503) return EXIT.unavailable;
  return EXIT.error;
}

/**
 * Network failures that mean "no node is there (right now)": refused, reset, unreachable, a name
 * that does not resolve, or a node that accepted the connection and then went silent.
 */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
]);

/** Every `code` found on an error, its `cause` chain and (for happy-eyeballs) its `errors`. */
function errorCodes(err: unknown, seen = new Set<unknown>()): string[] {
  if (typeof err !== 'object' || err === null || seen.has(err)) return [];
  seen.add(err);
  const e = err as { code?: unknown; cause?: unknown; errors?: unknown };
  const codes = typeof e.code === 'string' ? [e.code] : [];
  codes.push(...errorCodes(e.cause, seen));
  if (Array.isArray(e.errors)) for (const inner of e.errors) codes.push(...errorCodes(inner, seen));
  return codes;
}

const NETWORK_WORDS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'the transfer stalled',
  UND_ERR_SOCKET: 'the connection broke',
  UND_ERR_CLOSED: 'the connection closed',
};

/**
 * Turns a failure of a request to `where` (a URL safe to show) into a CliError: network failures
 * exit 5, everything else already a CliError stays as it is.
 */
export function networkError(err: unknown, where: string): CliError {
  if (err instanceof CliError) return err;
  const codes = errorCodes(err);
  const known = codes.find((c) => UNAVAILABLE_CODES.has(c));
  if (known !== undefined) {
    return new CliError(`cannot reach ${where}: ${NETWORK_WORDS[known] ?? known}`, EXIT.unavailable, {
      cause: err,
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new CliError(`request to ${where} failed: ${message}`, EXIT.error, { cause: err });
}
