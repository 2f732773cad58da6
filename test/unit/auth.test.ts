import { signRequest, verifyRequest } from '../../services/storage-node/src/peers/auth';

const secret = 'cluster-secret-for-tests-000';

describe('node-to-node signatures', () => {
  const now = 1_800_000_000_000;
  const header = signRequest(secret, 'PUT', '/internal/v1/blobs/abc', now);

  it('accepts a fresh signature for the same method and path', () => {
    expect(verifyRequest(secret, header, 'PUT', '/internal/v1/blobs/abc', now + 1000)).toEqual({ ok: true });
  });

  it.each([
    ['another method', 'GET', '/internal/v1/blobs/abc', now],
    ['another path', 'PUT', '/internal/v1/blobs/abd', now],
    ['a replay outside the window', 'PUT', '/internal/v1/blobs/abc', now + 60_000],
    ['a signature from the future', 'PUT', '/internal/v1/blobs/abc', now - 60_000],
  ])('refuses %s', (_what, method, path, at) => {
    expect(verifyRequest(secret, header, method, path, at).ok).toBe(false);
  });

  it('refuses another secret, a missing or a malformed header', () => {
    expect(verifyRequest('another-secret-entirely-00', header, 'PUT', '/internal/v1/blobs/abc', now).ok).toBe(
      false,
    );
    expect(verifyRequest(secret, undefined, 'PUT', '/x', now).ok).toBe(false);
    expect(verifyRequest(secret, 'sig=123', 'PUT', '/x', now).ok).toBe(false);
  });
});
