import { randomBytes } from 'node:crypto';
import { SECRET, TestCluster } from '../helpers/cluster';
import { upload } from '../helpers/client';

/** No secret ever appears in a log line or an error message. */
describe('secrets', () => {
  let cluster: TestCluster;
  const KEY = 'api-key-that-must-never-be-logged';

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, apiKeys: [KEY], env: { SHOAL_LOG_LEVEL: 'debug' } });
  });

  afterAll(async () => {
    await cluster?.stopAll();
  });

  it('stay out of logs and error messages, even at debug level', async () => {
    const auth = { authorization: `Bearer ${KEY}` };
    const bodies: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await upload(cluster.url(i), randomBytes(2000), `s-${i}.bin`, auth);
      expect(res.status).toBe(201);
    }
    const attempts: Array<Record<string, string>> = [
      { authorization: `Bearer ${KEY}x` },
      { authorization: `Basic ${KEY}` },
      {},
    ];
    for (const headers of attempts) {
      const res = await fetch(`${cluster.url(0)}/files`, { headers });
      expect(res.status).toBe(401);
      bodies.push(await res.text());
    }
    // A forged node-to-node call, and one signed with a wrong secret.
    const internal = await fetch(`${cluster.url(1)}/internal/v1/status`, {
      headers: { 'x-shoal-auth': `t=1,sig=${'0'.repeat(64)}` },
    });
    expect(internal.status).toBe(401);
    bodies.push(await internal.text());
    await cluster.kill(2, 'SIGTERM');
    const logs = [0, 1, 2].map((i) => cluster.log(i)).join('\n');
    expect(logs.length).toBeGreaterThan(1000);
    for (const secret of [KEY, SECRET]) {
      expect(logs).not.toContain(secret);
      for (const body of bodies) expect(body).not.toContain(secret);
    }
  });
});
