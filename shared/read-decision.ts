import { etagMatches, parseRange } from './http-range';

export interface ReadRequest {
  method: 'GET' | 'HEAD';
  range?: string;
  ifNoneMatch?: string;
  reqId?: string;
  /** Between nodes: send whole blocks behind their checksums, for the reader to check again. */
  framed?: boolean;
}

export interface ReadDecision {
  status: 200 | 206 | 304 | 416;
  /** First and last byte sent (inclusive); for an empty body start = 0, end = -1. */
  start: number;
  end: number;
}

/**
 * What to answer for a file of `size` bytes with entity tag sha256, from a request's conditional
 * and range headers. Every copy of a file answers the same, so a node deciding for a copy it
 * reads from a peer and the peer deciding for its own copy agree.
 */
export function decideRead(
  file: { size: number; sha256: string },
  request: Pick<ReadRequest, 'range' | 'ifNoneMatch'>,
): ReadDecision {
  const full: ReadDecision = { status: 200, start: 0, end: file.size - 1 };
  if (etagMatches(request.ifNoneMatch, `"${file.sha256}"`)) return { ...full, status: 304 };
  const range = parseRange(request.range, file.size);
  if (range.kind === 'unsatisfiable') return { ...full, status: 416 };
  if (range.kind === 'range') return { status: 206, start: range.start, end: range.end };
  return full;
}

/** Whether a decided read sends bytes: a GET answered 200 or 206 with a non-empty range. */
export function sendsBody(method: ReadRequest['method'], decision: ReadDecision): boolean {
  return (
    method === 'GET' && (decision.status === 200 || decision.status === 206) && decision.end >= decision.start
  );
}
