import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../shared/logging';
import { ApiKeys, KEYS_FILE_GRACE_MS, parseKeyEntry } from '../../services/storage-node/src/http/access';
import { roleNeeded } from '../../services/storage-node/src/http/gate';

/** The keys file on a real disk, as a Kubernetes Secret mount is: rotated, emptied, deleted. */
describe('API keys from a file', () => {
  let dir: string;
  let file: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-keys-'));
    file = join(dir, 'keys');
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('never accepts the placeholder key the manifests ship', async () => {
    writeFileSync(file, '# ops team\nk-0123456789abcdef\nCHANGE-ME-placeholder-api-key\n');
    const keys = new ApiKeys([], file, silentLogger());
    await keys.reload();
    expect(keys.accepts('k-0123456789abcdef')).toBe(true);
    expect(keys.accepts('CHANGE-ME-placeholder-api-key')).toBe(false);
  });

  it('keeps the keys while the file is briefly gone, and accepts none once it stays gone', async () => {
    writeFileSync(file, 'k-0123456789abcdef\n');
    const keys = new ApiKeys([], file, silentLogger());
    const start = Date.now();
    await keys.reload(start);
    unlinkSync(file);
    await keys.reload(start + KEYS_FILE_GRACE_MS - 1000);
    expect(keys.accepts('k-0123456789abcdef')).toBe(true);
    await keys.reload(start + KEYS_FILE_GRACE_MS + 1000);
    expect(keys.accepts('k-0123456789abcdef')).toBe(false);
    expect(keys.enabled).toBe(true);
    // Written again, it counts again.
    writeFileSync(file, 'k-0123456789abcdef\n');
    await keys.reload(start + KEYS_FILE_GRACE_MS + 2000);
    expect(keys.accepts('k-0123456789abcdef')).toBe(true);
  });

  it('accepts no key from an emptied file at once', async () => {
    writeFileSync(file, 'k-0123456789abcdef\n');
    const keys = new ApiKeys([], file, silentLogger());
    await keys.reload();
    writeFileSync(file, '# all revoked\n');
    await keys.reload();
    expect(keys.accepts('k-0123456789abcdef')).toBe(false);
  });
});

describe('key roles', () => {
  it('reads a role prefix, and gives a key without one the write role', () => {
    expect(parseKeyEntry('read:abc')).toMatchObject({ key: 'abc', role: 'read' });
    expect(parseKeyEntry('admin:a:b')).toMatchObject({ key: 'a:b', role: 'admin' });
    expect(parseKeyEntry('plain-key')).toMatchObject({ key: 'plain-key', role: 'write' });
    expect(parseKeyEntry('other:x')).toMatchObject({ key: 'other:x', role: 'write' });
    expect(parseKeyEntry('read:abc').id).toBe(parseKeyEntry('admin:abc').id);
    expect(parseKeyEntry('abc').id).toMatch(/^[0-9a-f]{16}$/);
  });

  it.each([
    ['GET', '/files/x', 'read'],
    ['HEAD', '/files/x', 'read'],
    ['GET', '/admin/drain', 'read'],
    ['POST', '/files/x/links', 'read'],
    ['POST', '/files', 'write'],
    ['DELETE', '/files/x', 'write'],
    ['POST', '/admin/drain', 'admin'],
    ['DELETE', '/admin/drain', 'admin'],
  ])('%s %s needs %s', (method, path, role) => {
    expect(roleNeeded(method, path)).toBe(role);
  });
});
