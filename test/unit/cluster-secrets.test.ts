import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../shared/logging';
import { LinkSigner } from '../../services/storage-node/src/http/access';
import { ClusterSecrets, readSecretFile } from '../../services/storage-node/src/peers/cluster-secrets';

/** A rotation of the cluster secret through its file, step by step, as one node sees it. */
describe('cluster secrets from a file', () => {
  let dir: string;
  let file: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-secret-'));
    file = join(dir, 'secret');
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** Writes the file so that its stamp changes even within one millisecond. */
  let writes = 0;
  const write = (text: string): void => writeFileSync(file, text + '\n'.repeat(++writes));

  it('signs with the first line, accepts both, and keeps download links working through a rotation', async () => {
    const OLD = 'the-old-cluster-secret-01';
    const NEW = 'the-new-cluster-secret-01';
    write(OLD);
    const secrets = new ClusterSecrets(readSecretFile(file), file, silentLogger());
    const links = new LinkSigner(secrets);
    const expires = Math.floor(Date.now() / 1000) + 3600;
    const oldLink = links.sign('f1', expires);

    write(`${OLD}\n${NEW}`);
    await secrets.reload();
    expect([secrets.signing, secrets.accepted]).toEqual([OLD, [OLD, NEW]]);

    write(`${NEW}\n${OLD}`);
    await secrets.reload();
    expect([secrets.signing, secrets.accepted]).toEqual([NEW, [NEW, OLD]]);
    expect(links.verify('f1', String(expires), oldLink)).toBe('ok');
    const newLink = links.sign('f1', expires);
    expect(newLink).not.toBe(oldLink);

    write(NEW);
    await secrets.reload();
    expect(secrets.accepted).toEqual([NEW]);
    expect(links.verify('f1', String(expires), oldLink)).toBe('bad');
    expect(links.verify('f1', String(expires), newLink)).toBe('ok');
  });

  it('keeps the secrets in use when the file turns invalid or vanishes', async () => {
    write('the-old-cluster-secret-01');
    const secrets = new ClusterSecrets(readSecretFile(file), file, silentLogger());
    write('CHANGE-ME-placeholder-cluster-secret');
    await secrets.reload();
    expect(secrets.accepted).toEqual(['the-old-cluster-secret-01']);
    rmSync(file);
    await secrets.reload();
    expect(secrets.signing).toBe('the-old-cluster-secret-01');
  });
});
