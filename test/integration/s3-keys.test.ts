import { TestCluster, waitFor } from '../helpers/cluster';
import { runShoal } from '../helpers/shoal-cli';

/**
 * S3 access keys through `shoal key`, against three real nodes: a key made at one node is known
 * at every other when the command returns, a revoked key is gone everywhere, only admin keys
 * manage them, and a node that was down while keys changed catches up by itself.
 */

const ADMIN = 'admin-key-for-s3-tests';
const READER = 'reader-key-for-s3-tests';

const shoal = (args: string[], apiKey = ADMIN) => runShoal(args, apiKey);

interface KeyInfo {
  accessKeyId: string;
  name: string;
  createdAt: string;
}

describe('shoal key', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, apiKeys: [`admin:${ADMIN}`, `read:${READER}`] });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  const keysAt = async (i: number): Promise<KeyInfo[]> => {
    const run = await shoal(['key', 'ls', '--json', '--to', cluster.url(i)]);
    expect(run).toMatchObject({ code: 0, err: '' });
    return JSON.parse(run.out) as KeyInfo[];
  };

  it('makes a key at one node that every node knows when the command returns, and shows its secret once', async () => {
    const made = await shoal(['key', 'create', 'backup job', '--json', '--to', cluster.url(0)]);
    expect(made).toMatchObject({ code: 0, err: '' });
    const key = JSON.parse(made.out) as { accessKeyId: string; secretAccessKey: string; name: string };
    expect(key).toEqual({
      accessKeyId: expect.stringMatching(/^[A-Z0-9]{20}$/),
      secretAccessKey: expect.stringMatching(/^[A-Za-z0-9_-]{40}$/),
      name: 'backup job',
    });
    for (let i = 0; i < 3; i++) {
      const listed = await shoal(['key', 'ls', '--json', '--to', cluster.url(i)]);
      expect(JSON.parse(listed.out)).toContainEqual(
        expect.objectContaining({ accessKeyId: key.accessKeyId, name: 'backup job' }),
      );
      expect(listed.out).not.toContain(key.secretAccessKey);
    }
    const text = await shoal(['key', 'ls', '--to', cluster.url(1)]);
    expect(text.out).toMatch(new RegExp(`^${key.accessKeyId}\\s+\\S+\\s+backup job$`, 'm'));
  });

  it('revokes a key at every node, and says so for a key that does not exist', async () => {
    const key = JSON.parse(
      (await shoal(['key', 'create', 'short-lived', '--json', '--to', cluster.url(1)])).out,
    ) as {
      accessKeyId: string;
    };
    expect(await shoal(['key', 'rm', key.accessKeyId, '--to', cluster.url(2)])).toMatchObject({ code: 0 });
    for (let i = 0; i < 3; i++)
      expect((await keysAt(i)).map((k) => k.accessKeyId)).not.toContain(key.accessKeyId);
    const again = await shoal(['key', 'rm', key.accessKeyId, '--to', cluster.url(0)]);
    expect(again.code).toBe(3);
    expect(again.err).toMatch(/no such S3 access key/);
  });

  it('lets only an admin key manage keys; a read key may list them', async () => {
    const before = await keysAt(0);
    const refused = await shoal(['key', 'create', 'sneaky', '--to', cluster.url(0)], READER);
    expect(refused.code).not.toBe(0);
    expect(refused.err).toMatch(/admin/);
    const anonymous = await fetch(`${cluster.url(0)}/admin/s3/keys`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'anonymous' }),
    });
    expect(anonymous.status).toBe(401);
    expect(await keysAt(0)).toEqual(before);
    expect((await shoal(['key', 'ls', '--to', cluster.url(0)], READER)).code).toBe(0);
    const badName = await shoal(['key', 'create', ' padded ', '--to', cluster.url(0)]);
    expect(badName.code).toBe(2);
  });

  it('catches up a node that was down while keys were made and revoked', async () => {
    const doomed = JSON.parse(
      (await shoal(['key', 'create', 'doomed', '--json', '--to', cluster.url(0)])).out,
    ) as {
      accessKeyId: string;
    };
    await waitFor(
      async () => (await keysAt(2)).some((k) => k.accessKeyId === doomed.accessKeyId),
      10_000,
      'node 2 to know the key',
    );
    await cluster.kill(2);
    const made = JSON.parse(
      (await shoal(['key', 'create', 'while-away', '--json', '--to', cluster.url(0)])).out,
    ) as {
      accessKeyId: string;
    };
    expect((await shoal(['key', 'rm', doomed.accessKeyId, '--to', cluster.url(1)])).code).toBe(0);
    // Node 2 comes back with the revoked key still in its registry: the revocation must win there.
    await cluster.restart(2);
    await waitFor(
      async () => {
        const ids = (await keysAt(2)).map((k) => k.accessKeyId);
        return ids.includes(made.accessKeyId) && !ids.includes(doomed.accessKeyId);
      },
      15_000,
      'the returning node to take the new key and the revocation',
    );
    // And it does not hand the revoked key back to the others.
    await new Promise((r) => setTimeout(r, 4_000));
    for (let i = 0; i < 2; i++)
      expect((await keysAt(i)).map((k) => k.accessKeyId)).not.toContain(doomed.accessKeyId);
  });
});
