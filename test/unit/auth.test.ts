import {
  ReplayGuard,
  STREAMED_BODY,
  bodyDigest,
  signRequest,
  verifyRequest,
} from '../../services/storage-node/src/peers/auth';

const secret = 'cluster-secret-for-tests-000';
const previous = 'the-secret-before-rotation-0';
const path = '/internal/v1/blobs/abc/commit';
const body = '{"token":"t"}';

describe('node-to-node signatures', () => {
  const now = 1_800_000_000_000;
  const header = signRequest(secret, { method: 'POST', path, nodeId: 'node-1', body }, now);

  it('vouch for the sending node, a nonce and the body they were made over', () => {
    const verdict = verifyRequest([secret], header, 'POST', path, now + 1000);
    expect(verdict).toMatchObject({ ok: true, nodeId: 'node-1', bodyDigest: bodyDigest(body) });
    expect(verdict.ok && verdict.nonce).toMatch(/^[0-9a-f]{32}$/);
    expect(verdict.ok && verdict.rememberUntil).toBe(now + 30_000);
  });

  it('differ for each request, even the same one at the same time', () => {
    const again = signRequest(secret, { method: 'POST', path, nodeId: 'node-1', body }, now);
    expect(again).not.toBe(header);
  });

  it.each([
    ['another method', 'PUT', path, now],
    ['another path', 'POST', '/internal/v1/blobs/abd/commit', now],
    ['another query', 'POST', `${path}?force=1`, now],
    ['a time past the window', 'POST', path, now + 31_000],
    ['a time before the window', 'POST', path, now - 31_000],
  ])('refuse %s', (_what, method, p, at) => {
    expect(verifyRequest([secret], header, method, p, at).ok).toBe(false);
  });

  it('refuse a header whose node, nonce or body digest was changed', () => {
    const forged = [
      header.replace('node=node-1', 'node=node-2'),
      header.replace(/n=[0-9a-f]{32}/, `n=${'0'.repeat(32)}`),
      header.replace(/b=[0-9a-f]{64}/, `b=${bodyDigest('{"token":"u"}')}`),
      header.replace(/b=[0-9a-f]{64}/, `b=${STREAMED_BODY}`),
    ];
    for (const h of forged)
      expect(verifyRequest([secret], h, 'POST', path, now)).toEqual({
        ok: false,
        reason: 'bad node signature',
      });
  });

  it('refuse another secret, a missing, a malformed or a version 1 header', () => {
    expect(verifyRequest(['another-secret-entirely-00'], header, 'POST', path, now).ok).toBe(false);
    expect(verifyRequest([secret], undefined, 'POST', path, now).ok).toBe(false);
    expect(verifyRequest([secret], 'sig=123', 'POST', path, now).ok).toBe(false);
    expect(verifyRequest([secret], `t=${now},sig=${'a'.repeat(64)}`, 'POST', path, now).ok).toBe(false);
    expect(verifyRequest([secret], header.replace('node=node-1', 'node=a/b'), 'POST', path, now).ok).toBe(
      false,
    );
  });

  it('accept either secret during a rotation', () => {
    const old = signRequest(previous, { method: 'POST', path, nodeId: 'node-1', body }, now);
    expect(verifyRequest([secret, previous], old, 'POST', path, now).ok).toBe(true);
    expect(verifyRequest([secret], old, 'POST', path, now).ok).toBe(false);
  });
});

describe('the replay guard', () => {
  const now = 1_800_000_000_000;

  it('accepts a nonce once while its signature can still pass the time check', () => {
    const guard = new ReplayGuard();
    expect(guard.accept('a'.repeat(32), now + 30_000, now)).toBe(true);
    expect(guard.accept('a'.repeat(32), now + 30_000, now + 1)).toBe(false);
    expect(guard.accept('a'.repeat(32), now + 30_000, now + 29_999)).toBe(false);
    expect(guard.accept('b'.repeat(32), now + 30_000, now + 1)).toBe(true);
  });

  it('forgets nonces once their signatures are out of the window, so memory follows the request rate', () => {
    const guard = new ReplayGuard();
    for (let i = 0; i < 1000; i++) guard.accept(i.toString(16).padStart(32, '0'), now + 30_000 + i, now + i);
    expect(guard.size).toBe(1000);
    guard.accept('c'.repeat(32), now + 100_000, now + 70_000);
    expect(guard.size).toBe(1);
  });
});
