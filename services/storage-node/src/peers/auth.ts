import { constantTimeEqual, hmacHex, randomHex32, sha256Hex } from '../../../../shared/hashing';
import { NODE_ID_PATTERN } from '../../../../shared/ids';

/**
 * Node-to-node requests carry
 * `x-shoal-auth: v2;node=<id>;t=<unix ms>;n=<nonce>;b=<body digest>;sig=<hex>`, where sig is
 * HMAC-SHA256(cluster secret, "shoal-v2\n<METHOD>\n<path with query>\n<node>\n<t>\n<nonce>\n<b>").
 *
 * - The time bounds how long a signature is good for (AUTH_WINDOW_MS either way, for clock skew).
 * - The nonce makes each signature good for one request: the receiver remembers the nonces it
 *   accepted until their time has left the window (ReplayGuard), so a header seen on the wire
 *   cannot be sent again, with the same body or another.
 * - The body digest is the sha256 of the exact bytes of a JSON body (of nothing, for a request
 *   without one), checked by the receiver as it parses them. Only a streamed upload (the prepare
 *   route) may send `b=streamed`: its bytes are bound to the signed commit that must follow, by
 *   the block checksums the commit carries, and against an attacker who can change traffic in
 *   flight, by TLS.
 * - The sending node's id is signed, so a request is attributed to a node, not only to "someone
 *   holding the secret".
 */
export const AUTH_WINDOW_MS = 30_000;

/** The body digest of a streamed upload, whose bytes are not hashed into the signature. */
export const STREAMED_BODY = 'streamed';

const EMPTY_BODY = sha256Hex('');

export interface RequestToSign {
  method: string;
  /** Path and query, exactly as sent. */
  path: string;
  nodeId: string;
  /** The JSON body as sent, or STREAMED_BODY; left out when there is none. */
  body?: string | typeof STREAMED_BODY;
}

/** The digest a request's body is signed under. */
export function bodyDigest(body: string | Buffer | undefined): string {
  if (body === STREAMED_BODY) return STREAMED_BODY;
  return body === undefined || body.length === 0 ? EMPTY_BODY : sha256Hex(body);
}

export function signRequest(
  secret: string,
  request: RequestToSign,
  now: number = Date.now(),
  nonce: string = randomHex32(),
): string {
  const t = String(now);
  const b = bodyDigest(request.body);
  const sig = hmacHex(secret, stringToSign(request.method, request.path, request.nodeId, t, nonce, b));
  return `v2;node=${request.nodeId};t=${t};n=${nonce};b=${b};sig=${sig}`;
}

/** What a valid signature vouches for. */
export interface SignedBy {
  nodeId: string;
  nonce: string;
  /** The sha256 of the body (hex), or STREAMED_BODY. */
  bodyDigest: string;
  /** Until when the nonce must be remembered: after that, the time check alone refuses a replay. */
  rememberUntil: number;
}

export type AuthVerdict = ({ ok: true } & SignedBy) | { ok: false; reason: string };

const HEADER_PATTERN =
  /^v2;node=([^;]{1,64});t=(\d{1,16});n=([0-9a-f]{32});b=([0-9a-f]{64}|streamed);sig=([0-9a-f]{64})$/;

/**
 * Checks a signature against each accepted secret (the current one, and the previous one during
 * a rotation). Replays are the ReplayGuard's to refuse, and body digests the receiver's to check.
 */
export function verifyRequest(
  secrets: readonly string[],
  header: string | undefined,
  method: string,
  path: string,
  now: number = Date.now(),
  windowMs: number = AUTH_WINDOW_MS,
): AuthVerdict {
  if (!header) return { ok: false, reason: 'missing node signature' };
  const match = HEADER_PATTERN.exec(header);
  if (!match) return { ok: false, reason: 'malformed node signature' };
  const [, nodeId, t, nonce, b, sig] = match as unknown as [string, string, string, string, string, string];
  if (!NODE_ID_PATTERN.test(nodeId)) return { ok: false, reason: 'malformed node signature' };
  const signedAt = Number(t);
  if (Math.abs(now - signedAt) > windowMs)
    return { ok: false, reason: 'node signature outside its time window' };
  const text = stringToSign(method, path, nodeId, t, nonce, b);
  // Every secret is tried, so the time taken does not tell which one matched.
  let valid = false;
  for (const secret of secrets) valid = constantTimeEqual(sig, hmacHex(secret, text)) || valid;
  if (!valid) return { ok: false, reason: 'bad node signature' };
  return { ok: true, nodeId, nonce, bodyDigest: b, rememberUntil: signedAt + windowMs };
}

function stringToSign(
  method: string,
  path: string,
  nodeId: string,
  t: string,
  nonce: string,
  b: string,
): string {
  return `shoal-v2\n${method.toUpperCase()}\n${path}\n${nodeId}\n${t}\n${nonce}\n${b}`;
}

const BUCKET_MS = 5_000;

/**
 * The nonces of the signatures accepted within the window, each kept until its signature's time
 * has left the window (then the time check refuses it anyway). Kept in 5-second buckets by that
 * time, so that forgetting is dropping a bucket, not a scan. Memory follows the node-to-node
 * request rate: about 100 bytes per request over 60 s at most.
 */
export class ReplayGuard {
  private readonly buckets = new Map<number, Set<string>>();

  /** True the first time a nonce is offered (and then remembers it); false for a replay. */
  accept(nonce: string, rememberUntil: number, now: number = Date.now()): boolean {
    this.forgetBefore(now);
    for (const seen of this.buckets.values()) if (seen.has(nonce)) return false;
    const key = Math.floor(rememberUntil / BUCKET_MS);
    let bucket = this.buckets.get(key);
    if (!bucket) this.buckets.set(key, (bucket = new Set()));
    bucket.add(nonce);
    return true;
  }

  /** Nonces remembered now. */
  get size(): number {
    let n = 0;
    for (const seen of this.buckets.values()) n += seen.size;
    return n;
  }

  private forgetBefore(now: number): void {
    for (const key of this.buckets.keys()) {
      if ((key + 1) * BUCKET_MS < now) this.buckets.delete(key);
    }
  }
}
