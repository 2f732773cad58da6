import { constantTimeEqual, hmacHex } from '../../../../shared/hashing';

/**
 * Node-to-node requests carry `x-shoal-auth: t=<unix ms>,sig=<hex>` where sig is
 * HMAC-SHA256(cluster secret, "<METHOD>\n<path with query>\n<t>"). A signature is accepted only
 * within a short window around the receiver's clock, so a captured header cannot be replayed
 * later, and only for the exact method and path it was made for.
 */
export const AUTH_WINDOW_MS = 30_000;

export function signRequest(secret: string, method: string, path: string, now: number = Date.now()): string {
  const t = String(now);
  return `t=${t},sig=${hmacHex(secret, `${method.toUpperCase()}\n${path}\n${t}`)}`;
}

export type AuthVerdict = { ok: true } | { ok: false; reason: string };

export function verifyRequest(
  secret: string,
  header: string | undefined,
  method: string,
  path: string,
  now: number = Date.now(),
  windowMs: number = AUTH_WINDOW_MS,
): AuthVerdict {
  if (!header) return { ok: false, reason: 'missing node signature' };
  const match = /^t=(\d{1,16}),sig=([0-9a-f]{64})$/.exec(header);
  if (!match) return { ok: false, reason: 'malformed node signature' };
  const t = match[1]!;
  const sig = match[2]!;
  if (Math.abs(now - Number(t)) > windowMs)
    return { ok: false, reason: 'node signature outside its time window' };
  const expected = hmacHex(secret, `${method.toUpperCase()}\n${path}\n${t}`);
  return constantTimeEqual(sig, expected) ? { ok: true } : { ok: false, reason: 'bad node signature' };
}
