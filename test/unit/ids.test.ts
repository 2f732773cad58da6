import { ShoalError } from '../../shared/errors';
import { assertValidId, isValidId, newFileId } from '../../shared/ids';

describe('file ids', () => {
  it.each(['a', 'A-b_9', 'x'.repeat(64), '00mwr3zn0zs1dyicl1y1p65wlp'])('accepts %s', (id) => {
    expect(isValidId(id)).toBe(true);
  });

  it.each(['', 'x'.repeat(65), '../etc', 'a/b', 'a.b', 'a b', 'a\u0000b', '%2e%2e', 'é', 'a\nb', '..'])(
    'refuses %j before it can touch a path',
    (id) => {
      expect(isValidId(id)).toBe(false);
      expect(() => assertValidId(id)).toThrow(ShoalError);
    },
  );

  it('refuses non-strings', () => {
    expect(isValidId(undefined)).toBe(false);
    expect(isValidId(42)).toBe(false);
  });

  it('mints valid, unique ids that sort by creation time', () => {
    const ids = Array.from({ length: 1000 }, () => newFileId());
    expect(new Set(ids).size).toBe(1000);
    for (const id of ids) expect(isValidId(id)).toBe(true);
    const earlier = newFileId(Date.UTC(2030, 0, 1));
    const later = newFileId(Date.UTC(2030, 0, 1) + 1);
    expect(earlier < later).toBe(true);
  });
});
